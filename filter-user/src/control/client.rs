//! The CLI's side of the control socket: find a daemon's socket, send a request, read the
//! response (or, for `events --follow`, every response).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use super::{Request, Response, socket_path};

/// Finds the daemon's socket: the one for `iface`, or the only one running.
///
/// # Errors
/// If no daemon runs (for `iface`), or several run and `iface` is not given.
pub fn find_socket(run_dir: &Path, iface: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(iface) = iface {
        let path = socket_path(run_dir, iface);
        let exists = path.try_exists().map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                anyhow::anyhow!(
                    "permission denied reading {}: floodwall commands need root",
                    run_dir.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot look for {}", path.display()))
            }
        })?;
        if !exists {
            bail!(
                "no floodwall daemon is running on {iface} (no socket at {})",
                path.display()
            );
        }
        return Ok(path);
    }
    let mut sockets = all_sockets(run_dir)?;
    match sockets.len() {
        0 => bail!(
            "no floodwall daemon is running (no control socket in {})",
            run_dir.display()
        ),
        1 => Ok(sockets.remove(0)),
        _ => {
            let names: Vec<_> = sockets
                .iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            bail!(
                "floodwall protects several interfaces ({}); pick one with --iface",
                names.join(", ")
            )
        }
    }
}

/// Every control socket in `run_dir`, sorted (one per protected interface).
///
/// # Errors
/// If the directory cannot be read.
pub fn all_sockets(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sockets: Vec<PathBuf> = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sock"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied reading {}: floodwall commands need root",
            run_dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", run_dir.display())),
    };
    sockets.sort();
    Ok(sockets)
}

/// Sends `request` and calls `each` with every response line until the daemon closes the
/// connection (for `events --follow`).
///
/// # Errors
/// If the socket cannot be reached, an answer is not a response, or `each` fails.
pub async fn call_streaming(
    socket: &Path,
    request: &Request,
    mut each: impl FnMut(Response) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).context("cannot encode the request")?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .context("cannot send the request")?;
    let mut lines = BufReader::new(read).lines();
    while let Some(answer) = lines
        .next_line()
        .await
        .context("cannot read the daemon's answer")?
    {
        let response = serde_json::from_str(&answer)
            .with_context(|| format!("the daemon's answer is not a response: {answer}"))?;
        each(response)?;
    }
    Ok(())
}

async fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!(
                "permission denied connecting to {}: floodwall commands need root",
                socket.display()
            )
        } else {
            anyhow::Error::new(e)
                .context(format!("cannot reach the daemon at {}", socket.display()))
        }
    })
}

/// Sends one request to the daemon at `socket` and returns its response.
///
/// # Errors
/// If the socket cannot be reached or the daemon's answer is not a response.
pub async fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    // The daemon answers a request with one line and closes the connection.
    let mut answer = None;
    call_streaming(socket, request, |response| {
        answer.get_or_insert(response);
        Ok(())
    })
    .await?;
    answer.ok_or_else(|| anyhow::anyhow!("the daemon closed the connection without answering"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_lookup_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("fw-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = find_socket(&dir, None).unwrap_err().to_string();
        assert!(err.contains("no floodwall daemon is running"), "{err}");
        let err = find_socket(&dir, Some("eth9")).unwrap_err().to_string();
        assert!(err.contains("on eth9"), "{err}");
        std::fs::write(dir.join("a.sock"), b"").expect("file");
        std::fs::write(dir.join("b.sock"), b"").expect("file");
        let err = find_socket(&dir, None).unwrap_err().to_string();
        assert!(err.contains("several interfaces (a, b)"), "{err}");
        assert_eq!(
            find_socket(&dir, Some("a")).expect("found"),
            dir.join("a.sock")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
