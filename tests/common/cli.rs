//! Runs the `billing` command line beside a test server.

/// `billing <args>` beside the running server (same database, data directory and sealing
/// certificate), with its exit status, stdout and stderr.
pub fn run(s: &super::TestServer, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = s
        .command()
        .env("SEALED_SECRETS_CERT", super::sealing_cert_path())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
