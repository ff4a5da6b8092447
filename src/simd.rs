//! The one SIMD shuffle of the forwarding path: swapping a frame's two MAC
//! addresses with SSSE3's `pshufb`, as testpmd's MAC-swap does.
//!
//! SSSE3 is not in the x86-64 baseline this crate is built for, so the
//! shuffle is inline assembly behind a token, [`Ssse3`], that only
//! [`Ssse3::detect`] makes, after asking the CPU. Holding a token is the
//! proof that the instruction exists; the check is made once, when a
//! handler is built, never per frame. Inline assembly (rather than the
//! `_mm_shuffle_epi8` intrinsic, a `#[target_feature]` function) inlines
//! into a loop compiled for the baseline: three instructions per frame.
//!
//! This is the one module outside `port`, `buf::pool`, `time::tsc` and
//! `hint` that may use `unsafe`: the `asm!` block below.
#![allow(unsafe_code)]

/// Proof that the CPU has SSSE3 (made only by [`Ssse3::detect`]).
#[derive(Debug, Clone, Copy)]
pub struct Ssse3(());

impl Ssse3 {
    /// The token if this CPU has SSSE3 (every x86-64 CPU since about 2008
    /// does), `None` otherwise and on other architectures.
    pub fn detect() -> Option<Ssse3> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("ssse3") {
            return Some(Ssse3(()));
        }
        None
    }
}

/// The `pshufb` control that swaps bytes 0..6 with 6..12 and keeps 12..16
/// (16-byte aligned: the legacy-encoded memory operand needs it).
#[repr(align(16))]
struct Control([u8; 16]);
static SWAP_MACS: Control = Control([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 12, 13, 14, 15]);

/// Swaps `head[0..6]` with `head[6..12]` (an Ethernet header's destination
/// and source MACs) in one 16-byte load, shuffle and store; bytes 12..16
/// are written back unchanged.
#[inline(always)]
pub fn swap_macs(_proof: Ssse3, head: &mut [u8; 16]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `Ssse3` exists only if the CPU has SSSE3 (`pshufb`);
    // `movdqu` is SSE2, in the x86-64 baseline. The load and the store
    // cover exactly the 16 bytes of `head`, which we borrow mutably
    // (`movdqu` needs no alignment); the control is a 16-byte-aligned
    // static that is only read. No stack, no flags.
    unsafe {
        std::arch::asm!(
            "movdqu {x}, xmmword ptr [{p}]",
            "pshufb {x}, xmmword ptr [{c}]",
            "movdqu xmmword ptr [{p}], {x}",
            p = in(reg) head.as_mut_ptr(),
            c = in(reg) SWAP_MACS.0.as_ptr(),
            x = out(xmm_reg) _,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut t = [0u8; 6];
        t.copy_from_slice(&head[..6]);
        head.copy_within(6..12, 0);
        head[6..12].copy_from_slice(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn shuffle_swaps_the_macs_like_the_scalar_swap() {
        let t = Ssse3::detect().expect("x86-64 CPUs since about 2008 have SSSE3");
        let mut rng = Rng(0x55);
        for _ in 0..10_000 {
            let mut a = [0u8; 16];
            for x in a.iter_mut() {
                *x = rng.next_u64() as u8;
            }
            let mut want = a;
            want[..6].copy_from_slice(&a[6..12]);
            want[6..12].copy_from_slice(&a[..6]);
            let mut got = a;
            swap_macs(t, &mut got);
            assert_eq!(got, want);
            swap_macs(t, &mut got);
            assert_eq!(got, a, "twice is the identity");
        }
    }
}
