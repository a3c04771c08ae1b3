//! `to_file`, `to_dir`, `msgpack::to_dir` and `orbax::to_dir` under SIGKILL: a writer process overwriting a good
//! checkpoint is killed at many points; after each kill the checkpoint loads as the old params or
//! the new, exactly, never a part or a mix of shards.
//!
//! A killed process cannot remove its temporary file: those are left behind, named
//! `.NAME.<random>.tmp` next to the target, and this test checks that they are, and only they.
#![cfg(unix)]

#[path = "../examples/overwrite_loop.rs"]
mod overwrite_loop;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use overwrite_loop::{params, Checkpoint};

/// At least this many kills...
const MIN_KILLS: u32 = 50;
/// ...and more until this many landed in the middle of writing the file (not before it, while the
/// params serialize in memory, nor after the rename)...
const MIN_MID_WRITE: u32 = 10;
/// ...but no more than this.
const MAX_KILLS: u32 = 400;

/// The example binary, built by `cargo test` with the tests.
fn writer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("overwrite_loop");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it (or `cargo build --example overwrite_loop`)",
        path.display()
    );
    path
}

#[test]
fn a_killed_writer_leaves_the_old_or_the_new_file() {
    let writer = writer_binary();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("params.safetensors");
    let sets = [params(0), params(1)];
    safejax::to_file(&target, &sets[0]).unwrap();

    let mut outcomes = [0u32; 2];
    let mut left_temporaries = 0;
    let mut kill = 0;
    while kill < MIN_KILLS || (left_temporaries < MIN_MID_WRITE && kill < MAX_KILLS) {
        kill += 1;
        let mut child = Command::new(&writer)
            .arg(&target)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Two whole writes first, to time one on this machine, as loaded as it is.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_line = || lines.next().unwrap().unwrap();
        assert_eq!(next_line(), "wrote 0");
        let started = Instant::now();
        assert_eq!(next_line(), "wrote 1");
        let write_time = started.elapsed();
        // Then the kill, at a point spread over the next write and a half, on an irregular step.
        let fraction = f64::from(kill) * 0.618_034 % 1.0;
        std::thread::sleep(write_time.mul_f64(1.5 * fraction));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "kill {kill}: the writer ended by itself");

        let loaded: Checkpoint =
            safejax::from_file(&target).unwrap_or_else(|e| panic!("kill {kill}: the checkpoint does not load: {e}"));
        let which = sets
            .iter()
            .position(|set| *set == loaded)
            .unwrap_or_else(|| panic!("kill {kill}: the checkpoint is neither param set"));
        outcomes[which] += 1;

        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name == "params.safetensors" {
                continue;
            }
            assert!(
                name.starts_with(".params.safetensors.") && name.ends_with(".tmp"),
                "kill {kill}: unexpected file {name}"
            );
            left_temporaries += 1;
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    println!(
        "{kill} kills: {} times the first param set, {} times the second; {left_temporaries} kills \
         landed mid-write and left a temporary file",
        outcomes[0], outcomes[1]
    );
    // The kills did interrupt writes, and both sets were seen: the test tested something.
    assert!(
        left_temporaries >= MIN_MID_WRITE,
        "only {left_temporaries} of {kill} kills landed mid-write"
    );
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// Runs `writer ARGS` through one whole cycle of `saves` saves (to time it on this machine, as
/// loaded as it is), then SIGKILLs it somewhere in the next cycle and a bit, on an irregular step
/// by `kill`.
fn kill_in_a_cycle(writer: &std::path::Path, args: &[&str], saves: usize, kill: u32) {
    let mut child = Command::new(writer).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().unwrap().unwrap();
    let started = Instant::now();
    for i in 0..saves {
        assert_eq!(next_line(), format!("wrote {i}"));
    }
    let cycle = started.elapsed();
    let fraction = f64::from(kill) * 0.618_034 % 1.0;
    std::thread::sleep(cycle.mul_f64(1.2 * fraction));
    child.kill().unwrap(); // SIGKILL
    assert!(
        !child.wait().unwrap().success(),
        "kill {kill}: the writer ended by itself"
    );
}

/// Kills `overwrite_loop MODE DIR` at least `min_kills` times, mid-save as often as not, while it
/// overwrites a checkpoint directory with the sets of `dir_sets`; after each kill the directory
/// loads as one set exactly, and the unrelated files in it are untouched. Returns how often each
/// set was found, and how many kills left files of an unfinished save (temporary files, or shards
/// the committed index does not list).
fn kill_directory_saves(mode: &str, msgpack: bool, min_kills: u32) -> (Vec<u32>, u32) {
    use overwrite_loop::{dir_sets, save_dir, Layers};
    let writer = writer_binary();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let sets = dir_sets(msgpack);
    let unrelated = [("config.json", "{\"model_type\": \"bert\"}"), ("tokenizer.json", "{}")];
    for (name, text) in unrelated {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    save_dir(&path, &sets[0]).unwrap();

    let mut outcomes = vec![0u32; sets.len()];
    let mut unfinished = 0;
    for kill in 1..=min_kills {
        kill_in_a_cycle(&writer, &[mode, &path], sets.len(), kill);
        outcomes[overwrite_loop::crash_support::which_set(dir.path(), sets.iter().map(|(set, _)| set), kill)] += 1;
        for (name, text) in unrelated {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(name)).unwrap(),
                text,
                "kill {kill}"
            );
        }
        if leftovers(dir.path(), msgpack) > 0 {
            unfinished += 1;
        }
    }
    // The next save removes what the killed ones left: only its own files and the unrelated ones
    // remain.
    save_dir(&path, &sets[1]).unwrap();
    assert_eq!(leftovers(dir.path(), msgpack), 0);
    let loaded: Layers = safejax::from_dir(&path).unwrap();
    assert!(loaded == sets[1].0);
    (outcomes, unfinished)
}

/// What an unfinished save left in `dir`.
fn leftovers(dir: &std::path::Path, msgpack: bool) -> usize {
    if msgpack {
        overwrite_loop::crash_support::leftovers(dir, "flax_model", ".msgpack")
    } else {
        overwrite_loop::crash_support::leftovers(dir, "model", ".safetensors")
    }
}

#[test]
fn a_killed_directory_save_leaves_the_old_or_the_new_checkpoint() {
    let (outcomes, unfinished) = kill_directory_saves("--dir", false, 30);
    println!("30 kills of to_dir: found the sets {outcomes:?} times; {unfinished} kills left an unfinished save");
    // Every set, sharded or not, was found after some kill, and kills did land mid-save.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    assert!(unfinished >= 3, "only {unfinished} kills landed mid-save");
}

#[test]
fn a_killed_msgpack_directory_save_leaves_the_old_or_the_new_checkpoint() {
    let (outcomes, unfinished) = kill_directory_saves("--msgpack-dir", true, 15);
    println!("15 kills of msgpack::to_dir: found the sets {outcomes:?} times; {unfinished} left an unfinished save");
    assert!(outcomes.iter().filter(|&&n| n > 0).count() >= 2, "{outcomes:?}");
}

/// `orbax::to_dir` overwriting an Orbax checkpoint, killed at least 25 times: after each kill
/// `orbax::from_dir` gives one of the sets exactly; beside the checkpoint there is at most the
/// temporary directory of the killed save (`NAME.orbax-checkpoint-tmp`, which Orbax and safejax
/// skip), and the next save removes it.
#[test]
fn a_killed_orbax_save_leaves_the_old_or_the_new_checkpoint() {
    use overwrite_loop::{dir_sets, Layers};
    const KILLS: u32 = 30;
    let writer = writer_binary();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ckpt");
    let sets: Vec<Layers> = dir_sets(false).into_iter().map(|(set, _)| set).collect();
    safejax::orbax::to_dir(&target, &sets[0]).unwrap();
    let path = target.to_str().unwrap().to_owned();

    let mut outcomes = vec![0u32; sets.len()];
    let mut unfinished = 0;
    for kill in 1..=KILLS {
        kill_in_a_cycle(&writer, &["--orbax", &path], sets.len(), kill);
        let loaded: Layers = safejax::orbax::from_dir(&target)
            .unwrap_or_else(|e| panic!("kill {kill}: the checkpoint does not load: {e}"));
        outcomes[overwrite_loop::crash_support::which_of(&loaded, &sets, kill)] += 1;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            match name.as_str() {
                "ckpt" => {}
                "ckpt.orbax-checkpoint-tmp" => unfinished += 1,
                _ => panic!("kill {kill}: unexpected {name}"),
            }
        }
    }
    println!(
        "{KILLS} kills of orbax::to_dir: found the sets {outcomes:?} times; {unfinished} kills left an unfinished save"
    );
    // The next save removes what a killed one left.
    safejax::orbax::to_dir(&target, &sets[1]).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ckpt"]);
    let loaded: Layers = safejax::orbax::from_dir(&target).unwrap();
    assert!(loaded == sets[1]);
    // Kills did land at different points: more than one set was found, and some mid-save.
    assert!(outcomes.iter().filter(|&&n| n > 0).count() >= 2, "{outcomes:?}");
    assert!(unfinished >= 3, "only {unfinished} kills landed mid-save");
}
