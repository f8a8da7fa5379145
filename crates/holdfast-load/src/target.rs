//! The parsed target: where to connect and the request template every
//! request is built from.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;

use crate::LoadError;

/// A URL split into what the connection and the request line need.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `host:port` to resolve.
    pub host_port: String,
    /// The `Host` header value.
    pub authority: HeaderValue,
    /// Origin-form request target (`/path?query`), as HTTP/1.1 sends it.
    pub path: Uri,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let invalid = |reason: &str| LoadError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "https is not supported: the load generator speaks plain HTTP/1.1 (use http://)",
                ));
            }
            Some(other) => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?} (use http://)"
                )));
            }
            None => return Err(invalid("no scheme (use http://host:port/path)")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let host_port = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let path = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        Ok(Target {
            host_port,
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|_| invalid("host is not a valid header value"))?,
            path: path.parse().map_err(|_| invalid("bad path"))?,
        })
    }

    /// Resolves the address once; every connection of the run uses it.
    pub async fn resolve(&self) -> Result<SocketAddr, LoadError> {
        let resolve_error = |source| LoadError::Resolve {
            host: self.host_port.clone(),
            source,
        };
        tokio::net::lookup_host(&self.host_port)
            .await
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| resolve_error(std::io::Error::other("no address")))
    }
}

/// Everything constant about the requests of a run, prepared once so that
/// building a request is a few reference-count increments and one header
/// map clone.
#[derive(Clone, Debug)]
pub(crate) struct RequestTemplate {
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestTemplate {
    pub fn new(
        target: &Target,
        method: Method,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Self, LoadError> {
        let mut map = HeaderMap::with_capacity(headers.len() + 1);
        map.insert(HOST, target.authority.clone());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| LoadError::InvalidSpec(format!("bad header name {name:?}")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| LoadError::InvalidSpec(format!("bad value for header {name}")))?;
            if name == HOST {
                map.insert(name, value);
            } else {
                map.append(name, value);
            }
        }
        Ok(RequestTemplate {
            method,
            path: target.path.clone(),
            headers: map,
            body,
        })
    }

    /// A plain `GET` of the target, for health checks.
    pub fn get(target: &Target) -> Self {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(HOST, target.authority.clone());
        RequestTemplate {
            method: Method::GET,
            path: target.path.clone(),
            headers,
            body: Bytes::new(),
        }
    }

    pub fn build(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}
