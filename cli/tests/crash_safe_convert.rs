//! `safejax convert --shard-size` under SIGKILL: the command overwrites a sharded checkpoint
//! directory with another (a different shard count, keys in other shards, or one file) and is
//! killed at many points; after each kill the directory loads as the old params or the new,
//! exactly, its unrelated files are untouched, and the next convert removes what killed ones left.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_safejax");
const KILLS: u32 = 30;

#[path = "../../tests/crash_support/mod.rs"]
mod crash_support;

use crash_support::{layers as set, Layers};

/// The `convert` arguments that write set `k` into `out`: 4 shards, 3 shards (most keys in
/// another shard than before), one file.
fn convert_args(inputs: &[PathBuf], k: usize, out: &Path) -> Vec<String> {
    let input = inputs[k].display().to_string();
    match k {
        0 => vec![
            "convert".into(),
            input,
            out.display().to_string(),
            "--shard-size".into(),
            "1MiB".into(),
        ],
        1 => vec![
            "convert".into(),
            input,
            out.display().to_string(),
            "--shard-size".into(),
            "2500000".into(),
        ],
        _ => vec!["convert".into(), input, format!("{}/", out.display())],
    }
}

fn leftovers(dir: &Path) -> usize {
    crash_support::leftovers(dir, "model", ".safetensors")
}

fn run(args: &[String]) -> Duration {
    let started = Instant::now();
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

#[test]
fn a_killed_convert_leaves_the_old_or_the_new_checkpoint() {
    let scratch = tempfile_dir();
    let sets = [set(0, 128 << 10), set(1, 192 << 10), set(2, 160 << 10)];
    let inputs: Vec<PathBuf> = (0..sets.len())
        .map(|k| {
            let path = scratch.join(format!("in{k}.safetensors"));
            safejax::to_file(&path, &sets[k]).unwrap();
            path
        })
        .collect();
    let out = scratch.join("ckpt");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.json"), "{\"model_type\": \"bert\"}").unwrap();
    // One whole convert of each set, to time them on this machine, as loaded as it is.
    let times: Vec<Duration> = (0..sets.len()).map(|k| run(&convert_args(&inputs, k, &out))).collect();

    let mut outcomes = [0u32; 3];
    let mut unfinished = 0;
    let mut kill = 0;
    // At least KILLS kills; more (up to three times as many) while a set was never found, which
    // happens when converts run slower than they did when timed (other tests running beside
    // this one): those later kills wait longer, so that some converts finish.
    while kill < KILLS || (outcomes.contains(&0) && kill < 3 * KILLS) {
        kill += 1;
        let k = kill as usize % sets.len();
        let mut child = Command::new(BIN).args(convert_args(&inputs, k, &out)).spawn().unwrap();
        let fraction = f64::from(kill) * 0.618_034 % 1.0;
        let stretch = 1.1 * f64::from(1 + (kill - 1) / KILLS);
        std::thread::sleep(times[k].mul_f64(stretch * fraction));
        child.kill().unwrap(); // SIGKILL, or nothing if it is done
        child.wait().unwrap();

        outcomes[crash_support::which_set(&out, &sets, kill)] += 1;
        assert_eq!(
            std::fs::read_to_string(out.join("config.json")).unwrap(),
            "{\"model_type\": \"bert\"}",
            "kill {kill}"
        );
        if leftovers(&out) > 0 {
            unfinished += 1;
        }
    }
    println!("{kill} kills of convert: found the sets {outcomes:?} times; {unfinished} kills left an unfinished save");
    // The next convert removes what the killed ones left.
    run(&convert_args(&inputs, 1, &out));
    assert_eq!(leftovers(&out), 0);
    let loaded: Layers = safejax::from_dir(&out).unwrap();
    assert!(loaded == sets[1]);
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    assert!(unfinished >= 3, "only {unfinished} of {kill} kills landed mid-save");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A fresh scratch directory under the target directory.
fn tempfile_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash_safe_convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
