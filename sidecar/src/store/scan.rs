//! Listing keys by pattern without blocking Redis (`SCAN`, never `KEYS`).

use redis::aio::ConnectionLike;

/// Every key matching `pattern`, sorted and without the duplicates `SCAN` may return.
pub(crate) async fn scan_keys<C: ConnectionLike + Send>(
    conn: &mut C,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(200)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}
