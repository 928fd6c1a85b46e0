//! A minimal synchronous Redis client (RESP2 over one TCP connection): enough to bulk-load API key records with
//! pipelined writes and to read `INFO`, without an async runtime in the bench.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One reply, as RESP2 types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR …`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` then n bytes; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` then n replies; `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// One connection to a Redis server.
pub(crate) struct Redis {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Redis {
    pub(crate) fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("cannot connect to redis on port {port}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 16, stream.try_clone()?),
            writer: BufWriter::with_capacity(1 << 20, stream),
        })
    }

    /// Queues one command; nothing is read until [`Redis::replies`].
    pub(crate) fn queue(&mut self, args: &[&[u8]]) -> Result<()> {
        encode(&mut self.writer, args)?;
        Ok(())
    }

    /// Sends what is queued and reads `count` replies, failing on the first error reply.
    pub(crate) fn replies(&mut self, count: usize) -> Result<Vec<Reply>> {
        self.writer.flush()?;
        (0..count)
            .map(|_| match read_reply(&mut self.reader)? {
                Reply::Error(error) => bail!("redis refused a command: {error}"),
                reply => Ok(reply),
            })
            .collect()
    }

    /// One command, one reply.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.queue(args)?;
        self.replies(1)?
            .pop()
            .context("redis closed the connection")
    }
}

/// Writes `args` as a RESP array of bulk strings.
pub(crate) fn encode(out: &mut impl Write, args: &[&[u8]]) -> std::io::Result<()> {
    write!(out, "*{}\r\n", args.len())?;
    for arg in args {
        write!(out, "${}\r\n", arg.len())?;
        out.write_all(arg)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

/// Reads one reply.
pub(crate) fn read_reply(input: &mut impl BufRead) -> Result<Reply> {
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line)?;
    let Some(text) = line.strip_suffix(b"\r\n") else {
        bail!("truncated redis reply {:?}", String::from_utf8_lossy(&line));
    };
    let (kind, rest) = text.split_first().context("empty redis reply line")?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    let length = |rest: &str| -> Result<i64> {
        rest.parse()
            .with_context(|| format!("bad length {rest:?} in a redis reply"))
    };
    Ok(match kind {
        b'+' => Reply::Status(rest),
        b'-' => Reply::Error(rest),
        b':' => Reply::Integer(length(&rest)?),
        b'$' => match usize::try_from(length(&rest)?) {
            Err(_) => Reply::Bulk(None),
            Ok(n) => {
                let mut data = vec![0; n + 2];
                input.read_exact(&mut data)?;
                data.truncate(n);
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match usize::try_from(length(&rest)?) {
            Err(_) => Reply::Array(None),
            Ok(n) => Reply::Array(Some(
                (0..n).map(|_| read_reply(input)).collect::<Result<_>>()?,
            )),
        },
        other => bail!("unknown redis reply type {:?}", char::from(*other)),
    })
}

/// A field of an `INFO` answer (`name:value` lines), as a number.
pub(crate) fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"a b\r\n"]).unwrap();
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n");
    }

    #[test]
    fn reads_every_reply_type() {
        let mut input: &[u8] =
            b"+OK\r\n-ERR wrong\r\n:42\r\n$5\r\nab\r\nc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let replies: Vec<Reply> = (0..7).map(|_| read_reply(&mut input).unwrap()).collect();
        assert_eq!(
            replies,
            [
                Reply::Status("OK".into()),
                Reply::Error("ERR wrong".into()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"ab\r\nc".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Integer(1), Reply::Bulk(Some(vec![]))])),
                Reply::Array(None),
            ]
        );
        assert!(read_reply(&mut &b"+OK"[..]).is_err(), "no CRLF");
        assert!(read_reply(&mut &b"?x\r\n"[..]).is_err());
        assert!(read_reply(&mut &b"$9\r\nab\r\n"[..]).is_err(), "short bulk");
    }

    #[test]
    fn reads_info_fields() {
        let info =
            "# Memory\r\nused_memory:1234\r\nused_memory_human:1.21K\r\nused_memory_rss:9000\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1234));
        assert_eq!(info_field(info, "used_memory_rss"), Some(9000));
        assert_eq!(info_field(info, "used_memory_human"), None);
        assert_eq!(info_field(info, "missing"), None);
    }
}
