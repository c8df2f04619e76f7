//! Workspace benchmark: `banger workspace prepare` against its peers over
//! the same SSH to the same local sshd (a throwaway network namespace, see
//! `tests/e2e/guestnet/mod.rs`; needs root).
//!
//! 1. Generates a repository of `BANGER_BENCH_FILES` files (default 20000)
//!    totalling about `BANGER_BENCH_MB` MB (default 220), committed with
//!    automatic gc off (all objects stay loose, the worst case for us).
//! 2. First copy into empty directories: ours (`workspace prepare --full`)
//!    vs `git archive HEAD | ssh … tar -x` vs `rsync -a -e ssh`, first with
//!    every object loose, then after `git gc` (packed, as in a clone); and,
//!    for reference, the raw pipe ours is built on: `tar -c . | ssh tar -x`
//!    of the whole checkout (no git listing, no manifest, `.git` as is).
//! 3. Re-copy after changing 10 files: ours (delta, in the default mode
//!    that checks the guest's own listing of its copy, so both sides are
//!    compared as rsync does) vs `rsync -a` again; then, for reference, 10
//!    more files with `--trust-guest` (no look at the guest's copy).
//!
//! The peers' `ssh` gets the same options as the daemon's, including its
//! cipher preference (AES-GCM first on a CPU with AES instructions).
//!
//! Each case runs `BANGER_BENCH_ROUNDS` times (default 5), every timed run
//! after a `sync`, the order of the tools rotating from round to round.
//! Every first copy goes into a directory no earlier round used, and
//! nothing is deleted until the end: on ext4 (here mounted with `discard`)
//! writing a tree right after deleting one of the same size was measured
//! up to 6 times slower (`tar | tar` of the 220 MB tree: 0.5-0.9 s into
//! fresh directories, 3.3 s after an `rm -rf` of the previous copy), which
//! punished whichever tool wrote most and made every tool slow down from
//! round to round. Prints the medians and the ratio peer/ours (> 1 means
//! ours is faster), plus each round's ratio, and the load average before
//! and after. Not covered: a real guest (the "guest" is a local sshd in a
//! network namespace, so the guest's disk and CPU are the host's), a slow
//! link, `rsync --delete` (neither side deletes files only the guest has).
//! Run with `make bench-workspace` or `cargo bench -p banger --bench workspace`.

#[path = "../tests/e2e/guestnet/mod.rs"]
mod guestnet;
#[path = "../tests/e2e/util/mod.rs"]
mod util;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate(root: &Path, files: usize, total_mb: usize) {
    std::fs::create_dir_all(root).unwrap();
    let avg = total_mb * 1_000_000 / files;
    let words = [
        "fn", "let", "match", "impl", "struct", "return", "self", "where", "async", "await",
        "banger", "guest", "vm", "tar", "ssh", "delta", "manifest", "0x1f", "42", "{", "}",
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..files {
        let dir = root.join(format!("src/m{:03}/d{:02}", i / 200, (i / 20) % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let size = avg / 2 + (next() as usize % avg);
        let mut s = String::with_capacity(size + 16);
        while s.len() < size {
            s.push_str(words[next() as usize % words.len()]);
            s.push(if next() % 9 == 0 { '\n' } else { ' ' });
        }
        std::fs::write(dir.join(format!("f{i:05}.rs")), s).unwrap();
    }
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["-c", "user.name=B", "-c", "user.email=b@example.invalid"])
            .args(args));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    // No automatic gc: `git commit` would otherwise start a detached
    // `git gc --auto` (20k loose objects) that packs the repository in the
    // background while the copies are timed, stealing CPU from whichever
    // runs first and changing what `.git` holds mid-run.
    git(&["-c", "gc.auto=0", "commit", "-q", "-m", "generated"]);
}

/// Flush dirty pages (the generated repo, the previous copy's output)
/// before a timed run, so no copy pays for another one's writeback.
fn settle() {
    run(&mut Command::new("sync"));
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ssh_cmd(key: &Path) -> Vec<String> {
    vec![
        "ssh".into(),
        "-F".into(),
        "none".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-i".into(),
        key.display().to_string(),
        "-p".into(),
        guestnet::SSH_PORT.to_string(),
    ]
    .into_iter()
    // The peers run over the same SSH as ours, cipher preference included.
    .chain(
        banger_daemon::workspace::bulk_cipher_preference()
            .into_iter()
            .flat_map(|p| ["-o".to_string(), p.to_string()]),
    )
    .collect()
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let Some(net) = guestnet::GuestNet::new("bench workspace") else {
        return;
    };
    let Some(fx) = util::Fixtures::new("bench workspace") else {
        return;
    };
    if Command::new("rsync").arg("--version").output().is_err() {
        let _ = writeln!(std::io::stderr(), "SKIP bench workspace: rsync is missing");
        return;
    }
    net.enter_host();
    let files = env_num("BANGER_BENCH_FILES", 20_000);
    let mb = env_num("BANGER_BENCH_MB", 220);
    // The checkout is renamed every round, so `workspace prepare` (which
    // names the guest directory after it) copies into a fresh directory.
    let repo_at = |n: usize| net.dir.path().join(format!("benchrepo{n}"));
    let mut repo = repo_at(0);
    eprintln!("generating {files} files, ~{mb} MB ...");
    generate(&repo, files, mb);
    let work: PathBuf = net.dir.path().join("ours");
    let d = util::TestDaemon::start_with(&[], &net.guest_toml(&work, "none"));
    d.register_image(&fx, "base");
    d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    d.wait_state("dev", banger_api::VmState::Running, 20);
    let ssh = ssh_cmd(&net.client_key);
    let dest = "root@172.30.0.2";
    let rounds = env_num("BANGER_BENCH_ROUNDS", 5).max(1);
    let load_before = loadavg();
    // `source | ssh … tar -x` into `dir` on the guest.
    let pipe_to_guest = |mut source: Command, dir: &Path| {
        let mut src = source.stdout(Stdio::piped()).spawn().unwrap();
        let remote = format!("mkdir -p '{0}' && tar -x -C '{0}'", dir.display());
        let st = Command::new(&ssh[0])
            .args(&ssh[1..])
            .arg(dest)
            .arg(remote)
            .stdin(src.stdout.take().unwrap())
            .status()
            .unwrap();
        assert!(st.success() && src.wait().unwrap().success());
    };
    let rsync = |repo: &Path, to: &Path| {
        run(Command::new("rsync")
            .arg("-a")
            .arg("-e")
            .arg(ssh.join(" "))
            .arg(format!("{}/", repo.display()))
            .arg(format!("{dest}:{}/", to.display())));
    };
    // First copies into fresh directories, each round: ours, git archive
    // and rsync, every one after a `sync`. Twice: with every object loose
    // (as generated, gc off: the worst case for us, git state as 21 000
    // files or a pack made on the fly), then packed by `git gc` (what a
    // clone or any repository git has auto-gc'ed holds).
    let mut seq = 0;
    let mut rsync_dir = PathBuf::new();
    let mut first_copies = |repo: &mut PathBuf| {
        let (mut ours, mut archive, mut rsync_first, mut raw) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            seq += 1;
            std::fs::rename(&*repo, repo_at(seq)).unwrap();
            *repo = repo_at(seq);
            let repo_s = repo.display().to_string();
            let archive_dir = net.dir.path().join(format!("archive{seq}"));
            rsync_dir = net.dir.path().join(format!("rsync{seq}"));
            let raw_dir = net.dir.path().join(format!("raw{seq}"));
            // Who runs first rotates, so no tool always meets a quieter or
            // a busier machine (or page cache) than the others.
            let mut order = [0usize, 1, 2, 3];
            order.rotate_left(round % 4);
            for which in order {
                settle();
                match which {
                    0 => ours.push(time(|| {
                        d.cli_ok(&["workspace", "prepare", "dev", &repo_s, "--full"]);
                    })),
                    1 => archive.push(time(|| {
                        let mut git = Command::new("git");
                        git.arg("-C").arg(&*repo).args(["archive", "HEAD"]);
                        pipe_to_guest(git, &archive_dir);
                    })),
                    2 => rsync_first.push(time(|| rsync(repo, &rsync_dir))),
                    // The raw pipe ours is built on: the whole checkout
                    // (ignored files and all) through `tar | ssh tar`.
                    _ => raw.push(time(|| {
                        let mut tar = Command::new("tar");
                        tar.arg("-C").arg(&*repo).args(["-cf", "-", "."]);
                        pipe_to_guest(tar, &raw_dir);
                    })),
                }
            }
        }
        (ours, archive, rsync_first, raw)
    };
    let (ours_loose, archive_loose, rsync_loose, raw_loose) = first_copies(&mut repo);
    run(Command::new("git").arg("-C").arg(&repo).args(["gc", "-q"]));
    let (ours, archive, rsync_first, raw) = first_copies(&mut repo);

    // Re-copies into the last round's copies: each round changes 10 files,
    // then ours (delta) and rsync.
    let repo_s = repo.display().to_string();
    let ours_dir = work.join(repo.file_name().unwrap());
    let (mut ours_again, mut rsync_again, mut trusted) = (Vec::new(), Vec::new(), Vec::new());
    let change = |first: usize| {
        for i in 0..10 {
            let n = (first + i) % files;
            let f = repo.join(format!(
                "src/m{:03}/d{:02}/f{n:05}.rs",
                n / 200,
                (n / 20) % 10
            ));
            let mut data = std::fs::read(&f).unwrap();
            data.extend_from_slice(b"\n// touched\n");
            std::fs::write(&f, data).unwrap();
        }
    };
    let prepare = |extra: &[&str]| {
        time(|| {
            let mut args = vec!["workspace", "prepare", "dev", &repo_s, "--json"];
            args.extend_from_slice(extra);
            let out = d.cli_ok(&args);
            let p: banger_api::guest::WorkspacePrepared = serde_json::from_str(&out).unwrap();
            assert_eq!((p.files_sent, p.guest_changed), (10, 0), "{p:?}");
        })
    };
    for round in 0..rounds {
        change(round * 20);
        let ours_run = || prepare(&[]);
        settle();
        if round % 2 == 0 {
            ours_again.push(ours_run());
            settle();
            rsync_again.push(time(|| rsync(&repo, &rsync_dir)));
        } else {
            rsync_again.push(time(|| rsync(&repo, &rsync_dir)));
            settle();
            ours_again.push(ours_run());
        }
        // For reference: 10 more files without the guest check (rsync
        // catches up in the next round's run).
        change(round * 20 + 10);
        settle();
        trusted.push(prepare(&["--trust-guest"]));
    }
    let load_after = loadavg();
    // rsync's copy catches up with the last reference run (untimed).
    rsync(&repo, &rsync_dir);
    // Both ends hold the same tree: ours matches rsync's copy file by file.
    let diff = Command::new("diff")
        .args(["-r", "-q", "--exclude=.git"])
        .arg(&ours_dir)
        .arg(&rsync_dir)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "guest trees differ: {}",
        String::from_utf8_lossy(&diff.stdout)
    );

    for line in d
        .log()
        .lines()
        .filter(|l| l.contains("workspace prepare phases"))
    {
        println!("daemon: {}", line.trim());
    }
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "workspace benchmark: {files} files, ~{mb} MB, sshd in a local netns, \
         {rounds} round(s) in rotating order, medians"
    );
    println!("load before: {load_before}; after: {load_after}");
    println!(
        "{:<44} {:>9} {:>9} {:>13}   per round: ours/peer s=peer/ours",
        "case", "ours s", "peer s", "peer/ours"
    );
    for (case, o, p) in [
        ("first copy vs git archive|ssh tar", &ours, &archive),
        ("first copy vs rsync -a", &ours, &rsync_first),
        ("first copy vs tar|ssh tar (reference)", &ours, &raw),
        (
            "loose objects: first copy vs git archive",
            &ours_loose,
            &archive_loose,
        ),
        (
            "loose objects: first copy vs rsync -a",
            &ours_loose,
            &rsync_loose,
        ),
        (
            "loose objects: vs tar|ssh tar (reference)",
            &ours_loose,
            &raw_loose,
        ),
        ("re-copy (10 files) vs rsync -a", &ours_again, &rsync_again),
        (
            "re-copy --trust-guest vs rsync -a (ref.)",
            &trusted,
            &rsync_again,
        ),
    ] {
        let rounds: Vec<String> = o
            .iter()
            .zip(p.iter())
            .map(|(o, p)| format!("{:.2}/{:.2}={:.2}", secs(*o), secs(*p), secs(*p) / secs(*o)))
            .collect();
        println!(
            "{case:<44} {:>9.3} {:>9.3} {:>12.2}x   {}",
            secs(median(o)),
            secs(median(p)),
            secs(median(p)) / secs(median(o)),
            rounds.join(" ")
        );
    }
}
