//! aiosmtpd (PyPI) as a real SMTP server on a free 127.0.0.1 port, saving each message it
//! accepts to a directory, for the tests of customer emails.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// aiosmtpd on a free port in its own process group, saving each message to `dir`.
pub struct SmtpSink {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl SmtpSink {
    pub fn start() -> Option<Self> {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            super::skip::skip_unless_ci("the email tests", "python3 with aiosmtpd is missing");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/smtp_sink.py");
        let child = Command::new("python3")
            .process_group(0)
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the SMTP sink");
        let sink = SmtpSink { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "SMTP sink did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sink)
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far for `to`, as text.
    pub fn messages_to(&self, to: &str) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "eml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if header(&text, "To").is_some_and(|t| t.contains(to)) {
                    out.push(text);
                }
            }
        }
        out
    }

    /// Waits until some message reached `to`; then returns the distinct Message-IDs received
    /// for it, after `settle` more for any duplicate or second email to arrive.
    pub async fn message_ids_to(&self, to: &str, settle: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.messages_to(to).is_empty() {
            assert!(Instant::now() < deadline, "no email reached {to}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(settle).await;
        self.messages_to(to)
            .iter()
            .map(|m| header(m, "Message-ID").expect("a Message-ID header"))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        super::kill_process_group(&mut self.child);
    }
}

/// The value of header `name` in a raw message (unfolded headers only, which ours are).
pub fn header(message: &str, name: &str) -> Option<String> {
    message
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
}

/// The body of a raw message as text: quoted-printable soft line breaks (which lettre adds to
/// long lines) joined again. Our bodies are ASCII with no `=`, so nothing else is encoded.
pub fn body_text(message: &str) -> String {
    let message = message.replace("\r\n", "\n");
    let body = message.split_once("\n\n").map_or("", |(_, b)| b);
    body.replace("=\n", "")
}
