//! A private `redis-server`: on a free port, in its own directory, stopped on drop.

use crate::ports::try_free_port;
use crate::process::Process;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`RedisServer`] is started.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// The port; `None` picks a free one (and another if that one is taken before redis binds it).
    pub port: Option<u16>,
    /// The data and log directory; `None` makes a temporary one, removed with the server.
    pub dir: Option<PathBuf>,
    /// `--requirepass`, if any.
    pub password: Option<String>,
    /// Extra `redis-server` arguments. Without any, persistence is off (`--save "" --appendonly no`).
    pub args: Vec<String>,
}

/// A running `redis-server` on 127.0.0.1 (a [`Process`] named `redis`, its log `redis.log` in its directory).
#[derive(Debug)]
pub struct RedisServer {
    process: Option<Process>,
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
    // Declared last: the directory goes after the process that writes in it.
    _temp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A non-persistent server on a free port in a temporary directory; fails the test if it does not start.
    pub fn start() -> Self {
        Self::start_or_fail(RedisOptions::default())
    }

    /// [`RedisServer::start`] with `--requirepass password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_or_fail(RedisOptions {
            password: Some(password.to_owned()),
            ..RedisOptions::default()
        })
    }

    #[allow(clippy::panic)]
    fn start_or_fail(options: RedisOptions) -> Self {
        Self::launch(options).unwrap_or_else(|e| panic!("redis-server did not start: {e}"))
    }

    /// Starts a server as `options` say and waits until it answers PING. A port picked here that another process
    /// takes first is replaced by another, up to five times.
    pub fn launch(options: RedisOptions) -> io::Result<Self> {
        let temp = match options.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let dir = options
            .dir
            .clone()
            .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
            .unwrap_or_default();
        let attempts = if options.port.is_some() { 1 } else { 5 };
        let mut last = io::Error::other("no attempt");
        for _ in 0..attempts {
            let port = match options.port {
                Some(port) => port,
                None => try_free_port()?,
            };
            let mut server = Self {
                process: None,
                port,
                dir: dir.clone(),
                options: options.clone(),
                _temp: None,
            };
            match server.spawn() {
                Ok(()) => {
                    server._temp = temp;
                    return Ok(server);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> io::Result<()> {
        wait_for_redis_binary();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir);
        if self.options.args.is_empty() {
            command.args(["--save", "", "--appendonly", "no"]);
        } else {
            command.args(&self.options.args);
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        let mut process = Process::start("redis", &self.dir, command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if !process.is_running() {
                return Err(io::Error::other(format!(
                    "redis-server exited on port {}: {}",
                    self.port,
                    process.log_tail(5)
                )));
            }
            if ping(self.port, self.options.password.as_deref()) {
                self.process = Some(process);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "redis-server did not answer PING on port {} within {START_TIMEOUT:?}: {}",
            self.port,
            process.log_tail(5)
        )))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data and log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `redis://127.0.0.1:PORT/`, with `:PASSWORD@` if the server requires one.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The running process, `None` after [`RedisServer::stop`].
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// The running process, `None` after [`RedisServer::stop`].
    pub fn process_mut(&mut self) -> Option<&mut Process> {
        self.process.as_mut()
    }

    /// Kills the server at once (SIGKILL, no shutdown save).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::ZERO);
        }
    }

    /// Starts it again on the same port, with the same directory and arguments (so a persistent server comes
    /// back with its data, a non-persistent one empty); fails the test if it does not start.
    #[allow(clippy::panic)]
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when a server on `port` answers PING (after AUTH with `password`, if given).
pub(crate) fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut request = String::new();
    if let Some(password) = password {
        request.push_str(&format!(
            "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n",
            password.len()
        ));
    }
    request.push_str("*1\r\n$4\r\nPING\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 64];
    while !answer.ends_with(b"+PONG\r\n") {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => answer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            _ => return false,
        }
        // An error (wrong password, still loading) comes before PONG would.
        if answer.starts_with(b"-") {
            return false;
        }
    }
    true
}

/// Waits up to 5 minutes for `redis-server` to be on the PATH, in case `scripts/setup.sh` is still installing it.
fn wait_for_redis_binary() {
    let deadline = Instant::now() + Duration::from_secs(300);
    let installed = || {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
        })
    };
    while !installed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_with_its_password_only_and_restarts_on_the_same_port() {
        let mut redis = RedisServer::start_with_password("p@ss word");
        let port = redis.port();
        assert!(ping(port, Some("p@ss word")));
        assert!(!ping(port, Some("wrong")));
        assert!(!ping(port, None));
        assert_eq!(redis.url(), format!("redis://:p@ss word@127.0.0.1:{port}/"));
        redis.stop();
        assert!(!ping(port, Some("p@ss word")));
        redis.restart();
        assert_eq!(redis.port(), port);
        assert!(ping(port, Some("p@ss word")));
        let log = redis.dir().join("redis.log");
        drop(redis);
        assert!(
            !log.exists(),
            "the temporary directory goes with the server"
        );
        assert!(!ping(port, Some("p@ss word")));
    }
}
