//! The `bypass` command-line tool. Built on the public library API.
#![deny(unsafe_code)]

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
