//! Finds the system DPDK with pkg-config, generates bindings with bindgen,
//! and compiles the C shim that exports DPDK's `static inline` functions.
//!
//! `pkg-config --cflags libdpdk` is passed verbatim to both the C compiler
//! and bindgen: it carries `-include rte_config.h` and `-march=...`, which
//! DPDK's headers need (the include paths alone are not enough).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let out = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(args)
        .arg("libdpdk")
        .output()
        .map_err(|e| {
            format!("cannot run pkg-config ({e}); install it (`apt-get install pkg-config`)")
        })?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn fail(why: &str) -> ! {
    panic!(
        "\n\nbypass-dpdk-sys: DPDK >= 22.11 was not found through pkg-config (package `libdpdk`): {why}\n\
         Install it (Debian/Ubuntu: `apt-get install libdpdk-dev dpdk pkg-config libclang-dev clang`), \
         or point PKG_CONFIG_PATH at the directory holding libdpdk.pc, \
         or build bypass without `--features dpdk`.\n\n"
    )
}

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    println!("cargo:rerun-if-changed=shim/wrapper.h");
    println!("cargo:rerun-if-changed=shim/shim.c");

    let version = pkg_config(&["--modversion"]).unwrap_or_else(|e| fail(&e));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (22, 11) {
        fail(&format!("found version {version}, which is too old"));
    }
    let cflags = pkg_config(&["--cflags"]).unwrap_or_else(|e| fail(&e));
    let libs = pkg_config(&["--libs"]).unwrap_or_else(|e| fail(&e));
    let cflags: Vec<&str> = cflags.split_whitespace().collect();

    // Link flags, as pkg-config gives them.
    for flag in libs.split_whitespace() {
        if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if flag.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={flag}");
        }
    }
    println!("cargo:version={version}");

    // The shim.
    let mut build = cc::Build::new();
    build.file("shim/shim.c").include("shim").opt_level(3);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("bypass_dpdk_shim");

    // The bindings.
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("shim/wrapper.h")
        .clang_args(cflags.iter().copied())
        .clang_arg("-Ishim")
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("rte_.*")
        .allowlist_var("RTE_.*")
        // rte_ether_addr and a few other types are both packed and aligned,
        // which Rust cannot express: keep them opaque (we never look inside).
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .use_core()
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bypass-dpdk-sys: bindgen failed on DPDK {version}'s headers ({e}); \
                 it needs libclang (`apt-get install libclang-dev clang`)"
            )
        });
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs to OUT_DIR");
}
