//! Running the real `cspsync` binary and reading what it printed.
#![allow(dead_code)]

use std::process::Command;

/// What a run of the binary left: its exit code (-1 when killed) and its output.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cspsync` with `args`, no configuration directory from the environment, no colour.
pub fn run(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_cspsync"))
        .args(args)
        .env_remove("CSPSYNC_CONFIG_DIR")
        .env("NO_COLOR", "1")
        .output()
        .expect("run cspsync");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run`] off the async runtime (a sim in this process keeps serving meanwhile).
pub async fn run_async(args: Vec<String>) -> Out {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&a)
    })
    .await
    .unwrap()
}
