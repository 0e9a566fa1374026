//! A real headless Chromium (Debian's `chromium`) driven over the Chrome DevTools
//! Protocol on `--remote-debugging-pipe`: JSON messages ending in a NUL byte, the
//! browser reading commands on fd 3 and writing replies on fd 4. No WebDriver, no
//! WebSocket, no new crate: a page test needs a handful of commands (navigate,
//! evaluate, key presses, screenshots).
use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::AsRawFd as _, fd::FromRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const BROWSER: &str = "/usr/bin/chromium";
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page; the browser is ended (by PID) when dropped.
pub struct Browser {
    child: Child,
    commands: File,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts the browser with a page of `width`×`height` CSS pixels.
    pub fn launch(width: u32, height: u32) -> Self {
        assert!(
            Path::new(BROWSER).exists(),
            "{BROWSER} not found: the web UI test drives a real browser (scripts/setup.sh installs Debian's chromium)"
        );
        let profile = tempfile::tempdir().expect("browser profile directory");
        let (commands_read, commands) = pipe();
        let (replies, replies_write) = pipe();
        let (commands_read_fd, replies_write_fd) =
            (commands_read.as_raw_fd(), replies_write.as_raw_fd());
        let mut command = Command::new(BROWSER);
        command
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // Tests run as root, where Chromium's sandbox cannot start; the page it
                // loads is our own, from loopback.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--lang=en-US",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the forked child before exec; dup2 is async-signal-safe and
        // the fds were opened before the fork (the pipe ends are above 4, so dup2 onto
        // 3 and 4 clobbers neither).
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(commands_read_fd, 3) < 0 || libc::dup2(replies_write_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop(commands_read);
        drop(replies_write);
        let (sender, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop();
                        let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                            continue;
                        };
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Self {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// A browser-level command; its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A command to the page; its result.
    pub fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("encode command");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("send {method} to chromium: {e}"));
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(reply) if reply["id"] == json!(id) => {
                    assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                    return reply["result"].clone();
                }
                Ok(_event) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} within {REPLY_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium exited while answering {method}")
                }
            }
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let result = self.page("Page.navigate", json!({"url": url}));
        assert!(
            result.get("errorText").is_none(),
            "navigate to {url}: {result}"
        );
    }

    /// Evaluates a JavaScript expression in the page (promises awaited); its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until it is truthy; its value and how long
    /// that took. Fails the test after `within`.
    pub fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        expression: &str,
    ) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let value = self.eval(expression);
            let truthy = !(value.is_null()
                || value == json!(false)
                || value == json!(0)
                || value == json!(""));
            if truthy {
                return (value, start.elapsed());
            }
            assert!(start.elapsed() < within, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses a key as a person would: keyDown (with its text, if printable), keyUp.
    pub fn press(&mut self, key: &str) {
        let (code, key_code) = match key {
            "ArrowDown" => ("ArrowDown", 40),
            "ArrowUp" => ("ArrowUp", 38),
            "ArrowRight" => ("ArrowRight", 39),
            "ArrowLeft" => ("ArrowLeft", 37),
            "Enter" => ("Enter", 13),
            "Tab" => ("Tab", 9),
            "Escape" => ("Escape", 27),
            "/" => ("Slash", 191),
            other => panic!("no key code for {other}"),
        };
        let text = match key {
            "Enter" => "\r",
            "/" => "/",
            _ => "",
        };
        let mut down =
            json!({"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": key_code});
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.page("Input.dispatchKeyEvent", down);
        self.page(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code}),
        );
    }

    /// Types `text` into the focused element.
    pub fn type_text(&mut self, text: &str) {
        self.page("Input.insertText", json!({"text": text}));
    }

    /// A PNG of the page's viewport, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let result = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let data = result["data"].as_str().expect("screenshot data");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create screenshot directory");
        }
        std::fs::write(path, decode_base64(data)).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        crate::terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// A pipe whose ends are above fd 4 (so the child's dup2 onto 3 and 4 is safe) and
/// close on exec (the child gets only its dup2 copies).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    let high = fds.map(|fd| {
        // SAFETY: fd is a descriptor we own; F_DUPFD_CLOEXEC returns a new one ≥ 10.
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(
            moved >= 10,
            "fcntl F_DUPFD_CLOEXEC: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: closing the original, which nothing else holds.
        unsafe { libc::close(fd) };
        // SAFETY: `moved` is a fresh descriptor owned by nothing else.
        unsafe { File::from_raw_fd(moved) }
    });
    let [read, write] = high;
    (read, write)
}

/// Standard base64 (CDP's screenshot encoding) to bytes.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {other:#x}"),
        }
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0_u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8="), b"hello");
        assert_eq!(decode_base64("aGk="), b"hi");
        assert_eq!(decode_base64("YWJj"), b"abc");
        assert_eq!(decode_base64("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    }
}
