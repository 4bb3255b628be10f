//! Client programs (node, python) run to completion with a timeout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Runs a client program (node, python) to completion and returns its
/// output; kills it and panics, showing what it printed, after `timeout`.
/// The client runs in its own process group, so that a timeout also ends
/// the processes it started (node's test runner runs one per file).
pub fn run_client(command: &mut Command, timeout: Duration) -> Output {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            let out = String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned();
            let err = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
            panic!("{program} did not finish within {timeout:?}\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
