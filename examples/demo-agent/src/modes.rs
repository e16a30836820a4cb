//! The modes that do not call the model, for apf's tests of exit causes: `idle` (silent
//! forever), `crash` (exit 1 at once) and `oom` (grow until the memory limit kills it).
//!
//! `oom` stops growing at `DEMO_OOM_MAX_MB` and then holds what it has: on a container with no
//! memory limit it must not take the whole shared machine down with it.

use std::hint::black_box;
use std::thread;
use std::time::Duration;

use crate::exit::{Failure, code};
use crate::out::Out;

const PAGE: usize = 4096;
const BLOCK_MB: u64 = 16;

pub fn idle() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

pub fn crash(out: Out) -> Failure {
    out.log("crash mode: exiting with status 1");
    Failure::silent(code::CRASH)
}

pub fn oom(max_mb: u64, out: Out) -> ! {
    out.log(&format!("oom mode: allocating {BLOCK_MB} MiB blocks, up to {max_mb} MiB"));
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut held_mb: u64 = 0;

    while held_mb + BLOCK_MB <= max_mb {
        blocks.push(touched_block());
        held_mb += BLOCK_MB;
        if held_mb.is_multiple_of(256) {
            out.log(&format!("oom mode: holding {held_mb} MiB"));
        }
    }

    out.log(&format!("oom mode: reached DEMO_OOM_MAX_MB={max_mb} without being killed; holding"));
    black_box(&blocks);
    idle()
}

/// A block whose every page has been written, so the memory is really committed.
fn touched_block() -> Vec<u8> {
    let len = usize::try_from(BLOCK_MB * 1024 * 1024).unwrap_or(usize::MAX / 2);
    let mut block = vec![0u8; len];
    for (i, page) in block.chunks_mut(PAGE).enumerate() {
        page[0] = (i % 251) as u8 + 1;
    }
    black_box(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_touched() {
        let block = touched_block();
        assert_eq!(block.len() as u64, BLOCK_MB * 1024 * 1024);
        assert!(block.chunks(PAGE).all(|page| page[0] != 0));
    }

    #[test]
    fn crash_is_exit_1_without_an_event() {
        let failure = crash(Out { quiet: true });
        assert_eq!(failure.code, 1);
        assert!(failure.event.is_none());
    }
}
