//! The loopback redirect listener of the authorization-code flows (Microsoft and Xero), and
//! its fallback for SSH sessions: pasting the redirect URL the browser ended on.
//!
//! Microsoft matches `http://localhost` redirect URIs ignoring the port, so any ephemeral port
//! works (reference/external-apis.md §1.3, S1c); Xero allows http only for localhost (§7.1).
//! The listener binds 127.0.0.1 and the redirect URI names `localhost` (the registered form).

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// What the authorization server sent back to the redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Code {
        code: String,
        state: Option<String>,
    },
    Error {
        error: String,
        description: Option<String>,
        state: Option<String>,
    },
}

impl Redirect {
    /// Read the query of a redirect URL (`http://localhost:PORT/?code=..&state=..`). Accepts
    /// what a person pastes: surrounding spaces or quotes, or just the `?code=...` part.
    pub fn from_url(pasted: &str) -> Result<Redirect, String> {
        let s = pasted
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == '<' || c == '>');
        if s.is_empty() {
            return Err("paste the full address the browser shows after signing in".into());
        }
        let url = if s.starts_with('?') || s.starts_with("code=") || s.starts_with("error=") {
            Url::parse(&format!(
                "http://localhost/{}",
                if s.starts_with('?') {
                    s.to_string()
                } else {
                    format!("?{s}")
                }
            ))
        } else {
            Url::parse(s)
        }
        .map_err(|_| {
            "that is not a web address; paste the full address the browser shows after signing in"
                .to_string()
        })?;
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        Self::from_params(&q)
    }

    fn from_params(q: &HashMap<String, String>) -> Result<Redirect, String> {
        let state = q.get("state").cloned();
        if let Some(error) = q.get("error") {
            return Ok(Redirect::Error {
                error: error.clone(),
                description: q.get("error_description").cloned(),
                state,
            });
        }
        match q.get("code") {
            Some(code) if !code.is_empty() => Ok(Redirect::Code {
                code: code.clone(),
                state,
            }),
            _ => Err("the address has no `code`: sign in again and paste the address the browser ends on".into()),
        }
    }

    /// The code, if the state matches what was sent (CSRF protection); else a sentence.
    pub fn into_code(self, expected_state: &str) -> Result<String, String> {
        match self {
            Redirect::Code { code, state } => {
                if state.as_deref() == Some(expected_state) {
                    Ok(code)
                } else {
                    Err("the sign-in answer does not belong to this sign-in (state mismatch); start again".into())
                }
            }
            Redirect::Error {
                error, description, ..
            } => Err(match description {
                Some(d) => format!(
                    "sign-in failed: {error}: {}",
                    crate::api::error::clean_text(&d, 200)
                ),
                None => format!("sign-in failed: {error}"),
            }),
        }
    }
}

/// A listener on 127.0.0.1 waiting for one redirect.
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    redirect_uri: Url,
}

impl LoopbackListener {
    /// Bind an ephemeral port; `path` is the redirect path (`/` for Microsoft, `/callback`
    /// or `/` for Xero — whatever the app registration lists).
    pub async fn bind(path: &str) -> std::io::Result<LoopbackListener> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let redirect_uri = Url::parse(&format!("http://localhost:{port}{path}"))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(LoopbackListener {
            listener,
            redirect_uri,
        })
    }

    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// Wait for the browser's redirect (at most `timeout`), answer it with a short page, and
    /// return what it carried. Requests for other paths (a favicon) are answered 404 and
    /// waiting goes on.
    pub async fn wait(self, timeout: Duration) -> Result<Redirect, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept())
                .await
                .map_err(|_| "no answer from the browser in time; sign in again".to_string())?;
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            // Read until the end of the request head (or the buffer is full).
            while len < buf.len() {
                let read =
                    tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..]))
                        .await;
                match read {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        len += n;
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]).to_string();
            let target = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .to_string();
            let Ok(url) = Url::parse(&format!("http://localhost{target}")) else {
                let _ = respond(&mut stream, 400, "Bad request.").await;
                continue;
            };
            if url.path() != self.redirect_uri.path() {
                let _ = respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
            match Redirect::from_params(&q) {
                Ok(r) => {
                    let msg = match &r {
                        Redirect::Code { .. } => {
                            "Signed in. You can close this tab and return to cspsync."
                        }
                        Redirect::Error { .. } => {
                            "Sign-in did not complete. Return to cspsync for details."
                        }
                    };
                    let _ = respond(&mut stream, 200, msg).await;
                    return Ok(r);
                }
                Err(_) => {
                    let _ =
                        respond(&mut stream, 400, "This address carries no sign-in answer.").await;
                }
            }
        }
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    text: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cspsync</title></head><body><p>{text}</p></body></html>"
    );
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_urls_are_read() {
        let r = Redirect::from_url(" http://localhost:53682/?code=abc&state=xyz ").unwrap();
        assert_eq!(r.clone().into_code("xyz").unwrap(), "abc");
        assert!(r.into_code("other").unwrap_err().contains("state mismatch"));
        let r = Redirect::from_url("?error=access_denied&error_description=User+cancelled&state=s")
            .unwrap();
        assert!(r.into_code("s").unwrap_err().contains("access_denied"));
        assert!(Redirect::from_url("not a url").is_err());
        assert!(Redirect::from_url("http://localhost/?state=1").is_err());
    }

    #[tokio::test]
    async fn listener_receives_the_redirect() {
        let l = LoopbackListener::bind("/").await.unwrap();
        let uri = l.redirect_uri().clone();
        assert_eq!(uri.host_str(), Some("localhost"));
        let port = uri.port().unwrap();
        let waiter = tokio::spawn(l.wait(Duration::from_secs(5)));
        let client = reqwest::Client::new();
        let _ = client
            .get(format!("http://127.0.0.1:{port}/favicon.ico"))
            .send()
            .await;
        let page = client
            .get(format!("http://127.0.0.1:{port}/?code=c0de&state=st"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let r = waiter.await.unwrap().unwrap();
        assert_eq!(
            r,
            Redirect::Code {
                code: "c0de".into(),
                state: Some("st".into())
            }
        );
    }
}
