//! Optional authentication of the public listeners: API keys, and JWT
//! signed with HS256 (a shared secret) or RS256 (the issuer's public key).
//!
//! Off unless configured. When on, every request except the probes and the
//! documents (`/health*`, `/metrics`, `/swagger*`, `/api-docs*`) needs
//! credentials, as `Authorization: Bearer CREDENTIAL` (an API key or a
//! JWT) or `X-API-Key: KEY`. Without them the answer is `401
//! unauthorized` with a `WWW-Authenticate: Bearer` header (RFC 6750) that
//! says, for a credential that was sent, why it was refused.
//!
//! Two middlewares, on either side of the rate limit:
//! 1. [`identify`] reads the credentials and records who the client is
//!    (or why it is not anyone) in the request's extensions, without
//!    refusing anything;
//! 2. the rate limit keys its budget on that client: an API key's name or
//!    a token's subject when they check out, the address otherwise, so a
//!    flood of made-up credentials spends its address's budget, not a
//!    fresh one per guess;
//! 3. [`require`] refuses what [`identify`] could not accept.
//!
//! A handler can read the [`Client`] extension to know who is calling.
//! An API key is compared with every configured key in time that does not
//! depend on where they differ; JWT need `exp` and `sub`, `nbf` is honoured
//! when present, `iss` and `aud` are checked when configured. A token's
//! `alg` picks the key (HS256 the secret, RS256 the public key), so a
//! public key can never be used as an HMAC secret.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::problem::ApiError;

/// The shortest API key accepted: 16 characters, so a key cannot be
/// guessed in the time a rate limit leaves.
pub const MIN_API_KEY_LEN: usize = 16;
/// The shortest HS256 secret accepted: 32 bytes, the hash's own size, as
/// RFC 7518 asks.
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// One API key and the name it is known by in logs and rate limits.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Shown in logs and used as the client's identity.
    pub name: String,
    /// The secret the client sends.
    pub key: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// `NAME:KEY`.
    fn from_str(text: &str) -> Result<Self, String> {
        let Some((name, key)) = text.split_once(':') else {
            return Err("an API key is written NAME:KEY (for example ops:9f2c…)".to_owned());
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "the API key name {name:?} must be letters, digits, '-', '_' or '.'"
            ));
        }
        if key.chars().count() < MIN_API_KEY_LEN {
            return Err(format!(
                "the API key of {name} is shorter than {MIN_API_KEY_LEN} characters"
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the API key of {name} must be printable ASCII without spaces"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// What a listener accepts as credentials; nothing configured is off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// API keys.
    pub api_keys: Vec<ApiKey>,
    /// The secret of HS256 tokens.
    pub jwt_secret: Option<String>,
    /// The PEM public key of RS256 tokens.
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// The `iss` tokens must carry, if set.
    pub jwt_issuer: Option<String>,
    /// The `aud` tokens must carry, if set.
    pub jwt_audience: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &self.api_keys)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("jwt_public_key", &self.jwt_public_key_pem.is_some())
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

impl AuthConfig {
    /// Whether any credential is configured.
    pub fn is_on(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt_secret.is_some() || self.jwt_public_key_pem.is_some()
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    /// Two keys share a name.
    #[error("two API keys are named {0}")]
    DuplicateName(String),
    /// Two names share a key.
    #[error("API keys {0} and {1} are the same key")]
    DuplicateKey(String, String),
    /// The HS256 secret is too short.
    #[error("the JWT secret is shorter than {MIN_JWT_SECRET_LEN} bytes")]
    ShortSecret,
    /// The RS256 key cannot be read.
    #[error("the JWT public key is not an RSA public key in PEM: {0}")]
    BadPublicKey(String),
    /// The HS256 secret cannot be used.
    #[error("the JWT secret cannot be used: {0}")]
    BadSecret(String),
    /// An issuer or audience without a way to check tokens.
    #[error("a JWT issuer or audience is set, but neither a JWT secret nor a public key")]
    ClaimsWithoutKey,
}

/// Who is calling, once their credentials checked out: the request
/// extension handlers can read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// The name of the API key sent.
    Key(Arc<str>),
    /// The `sub` of the token sent.
    Subject(Arc<str>),
}

/// What [`identify`] found, for the rate limit and [`require`].
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// Checked out.
    Valid(Client),
    /// None sent.
    Missing,
    /// Sent and refused, with the reason told to the client.
    Refused(String),
    /// Sent in a form this service does not take (another scheme, both
    /// headers), with the reason.
    Malformed(String),
}

/// The checks of one listener.
pub struct Auth {
    keys: Vec<(Arc<str>, Box<[u8]>)>,
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("api_keys", &self.keys.len())
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish()
    }
}

impl Auth {
    /// The checks `cfg` asks for.
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut keys: Vec<(Arc<str>, Box<[u8]>)> = Vec::with_capacity(cfg.api_keys.len());
        for key in &cfg.api_keys {
            if let Some((name, _)) = keys.iter().find(|(name, _)| **name == *key.name) {
                return Err(AuthConfigError::DuplicateName(name.to_string()));
            }
            if let Some((name, _)) = keys.iter().find(|(_, k)| **k == *key.key.as_bytes()) {
                return Err(AuthConfigError::DuplicateKey(
                    name.to_string(),
                    key.name.clone(),
                ));
            }
            keys.push((key.name.as_str().into(), key.key.as_bytes().into()));
        }
        let validation = |alg| {
            let mut v = Validation::new(alg);
            // An issuer or audience configured is required, not only
            // compared when a token happens to carry one.
            let mut required = vec!["exp", "sub"];
            if cfg.jwt_issuer.is_some() {
                required.push("iss");
            }
            if cfg.jwt_audience.is_some() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            v.validate_nbf = true;
            v.leeway = 30;
            if let Some(issuer) = &cfg.jwt_issuer {
                v.set_issuer(&[issuer]);
            }
            match &cfg.jwt_audience {
                Some(audience) => v.set_audience(&[audience]),
                // A token naming an audience is for someone: without one
                // configured, any is accepted rather than all refused.
                None => v.validate_aud = false,
            }
            v
        };
        let hs256 = match &cfg.jwt_secret {
            Some(secret) if secret.len() < MIN_JWT_SECRET_LEN => {
                return Err(AuthConfigError::ShortSecret);
            }
            Some(secret) => Some((
                DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| AuthConfigError::BadSecret(e.to_string()))?,
                validation(Algorithm::HS256),
            )),
            None => None,
        };
        let rs256 = match &cfg.jwt_public_key_pem {
            Some(pem) => Some((
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| AuthConfigError::BadPublicKey(e.to_string()))?,
                validation(Algorithm::RS256),
            )),
            None => None,
        };
        if hs256.is_none()
            && rs256.is_none()
            && (cfg.jwt_issuer.is_some() || cfg.jwt_audience.is_some())
        {
            return Err(AuthConfigError::ClaimsWithoutKey);
        }
        Ok(Self { keys, hs256, rs256 })
    }

    /// What the credentials in `headers` amount to.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Credentials {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default())
            .map(|v| match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Ok(rest.trim()),
                _ => Err(()),
            });
        let api_key = headers
            .get("x-api-key")
            .map(|v| v.to_str().unwrap_or_default().trim());
        match (bearer, api_key) {
            (None, None) => Credentials::Missing,
            (Some(Err(())), _) => Credentials::Malformed(
                "the Authorization header must use the Bearer scheme".to_owned(),
            ),
            (Some(Ok(_)), Some(_)) => Credentials::Malformed(
                "send either Authorization or X-API-Key, not both".to_owned(),
            ),
            (None, Some(key)) => self.check_key(key),
            (Some(Ok(credential)), None) => {
                let jwt_on = self.hs256.is_some() || self.rs256.is_some();
                if jwt_on && credential.bytes().filter(|b| *b == b'.').count() == 2 {
                    self.check_token(credential)
                } else {
                    self.check_key(credential)
                }
            }
        }
    }

    fn check_key(&self, sent: &str) -> Credentials {
        if self.keys.is_empty() {
            return Credentials::Refused(
                "this service takes tokens (JWT), not API keys".to_owned(),
            );
        }
        // Every key is compared, whichever matches: the time taken says
        // nothing of which key, or how much of one, was right.
        let mut found = None;
        for (name, key) in &self.keys {
            if holdfast_chaos::stack_control::constant_time_eq(sent.as_bytes(), key) {
                found = Some(name);
            }
        }
        match found {
            Some(name) => Credentials::Valid(Client::Key(name.clone())),
            None => Credentials::Refused("the API key is not valid".to_owned()),
        }
    }

    fn check_token(&self, token: &str) -> Credentials {
        #[derive(serde::Deserialize)]
        struct Claims {
            // Optional here so that a missing one is told by the
            // validation's own error, which names the claim.
            #[serde(default)]
            sub: Option<String>,
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return Credentials::Refused("the token cannot be read".to_owned()),
        };
        let checks = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        };
        let Some((key, validation)) = checks else {
            return Credentials::Refused(format!(
                "tokens signed with {:?} are not accepted; this service takes {}",
                header.alg,
                self.algorithms()
            ));
        };
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => match data.claims.sub {
                Some(sub) if !sub.is_empty() => Credentials::Valid(Client::Subject(sub.into())),
                _ => Credentials::Refused("the token has no subject (sub)".to_owned()),
            },
            Err(err) => Credentials::Refused(
                match err.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    ErrorKind::InvalidIssuer => "the token's issuer (iss) is not the expected one",
                    ErrorKind::InvalidAudience => "the token's audience (aud) is not this service",
                    ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
                        "the token has no expiry (exp)"
                    }
                    ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => {
                        "the token has no subject (sub)"
                    }
                    ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
                        "the token has no issuer (iss)"
                    }
                    ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                        "the token has no audience (aud)"
                    }
                    _ => "the token cannot be read",
                }
                .to_owned(),
            ),
        }
    }

    fn algorithms(&self) -> &'static str {
        match (self.hs256.is_some(), self.rs256.is_some()) {
            (true, true) => "HS256 and RS256",
            (true, false) => "HS256",
            (false, true) => "RS256",
            (false, false) => "none",
        }
    }

    /// What a client is told to send.
    fn wanted(&self) -> &'static str {
        match (
            self.keys.is_empty(),
            self.hs256.is_some() || self.rs256.is_some(),
        ) {
            (false, true) => {
                "send `Authorization: Bearer <API key or token>` or `X-API-Key: <API key>`"
            }
            (false, false) => "send `Authorization: Bearer <API key>` or `X-API-Key: <API key>`",
            _ => "send `Authorization: Bearer <token>`",
        }
    }
}

/// Paths anyone may ask for: probes, metrics and the API documents.
fn is_open(path: &str) -> bool {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    matches!(
        first,
        "health" | "metrics" | "swagger" | "swagger-ui" | "api-docs"
    )
}

/// The first middleware: see the module docs.
pub(crate) async fn identify(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !is_open(req.uri().path()) {
        let credentials = auth.check(req.headers());
        if let Credentials::Valid(client) = &credentials {
            let name = match client {
                Client::Key(name) | Client::Subject(name) => name,
            };
            tracing::Span::current().record("client", &**name);
            req.extensions_mut().insert(client.clone());
        }
        req.extensions_mut().insert(credentials);
    }
    next.run(req).await
}

/// The second middleware: see the module docs.
pub(crate) async fn require(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    // Whatever ran before: a closed path without a verdict is refused as
    // one without credentials, never let through.
    let refused = match req.extensions().get::<Credentials>() {
        Some(Credentials::Valid(_)) => return next.run(req).await,
        None if is_open(req.uri().path()) => return next.run(req).await,
        None | Some(Credentials::Missing) => None,
        Some(Credentials::Malformed(reason)) => Some(("invalid_request", reason.clone())),
        Some(Credentials::Refused(reason)) => Some(("invalid_token", reason.clone())),
    };
    let detail = match &refused {
        None => format!("this endpoint needs credentials: {}", auth.wanted()),
        Some((_, reason)) => format!("{reason}: {}", auth.wanted()),
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
    let challenge = match refused {
        None => "Bearer realm=\"holdfast\"".to_owned(),
        Some((error, reason)) => format!(
            "Bearer realm=\"holdfast\", error=\"{error}\", error_description=\"{}\"",
            reason.replace(['"', '\\'], "'")
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn auth(keys: &[&str], secret: Option<&str>) -> Auth {
        Auth::new(&AuthConfig {
            api_keys: keys.iter().map(|k| k.parse().unwrap()).collect(),
            jwt_secret: secret.map(str::to_owned),
            jwt_issuer: secret.map(|_| "issuer".into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn keys_are_written_name_colon_key_and_weak_ones_are_refused() {
        let key: ApiKey = "ops:abcdefghijklmnop".parse().unwrap();
        assert_eq!(key.name, "ops");
        assert!(!format!("{key:?}").contains("abcdefghijklmnop"));
        assert!("abcdefghijklmnopqrst".parse::<ApiKey>().is_err());
        assert!("ops:short".parse::<ApiKey>().unwrap_err().contains("16"));
        assert!("o ps:abcdefghijklmnop".parse::<ApiKey>().is_err());
        assert!("ops:abcdefgh ijklmnop".parse::<ApiKey>().is_err());
        let twice = AuthConfig {
            api_keys: vec![
                "a:abcdefghijklmnop".parse().unwrap(),
                "b:abcdefghijklmnop".parse().unwrap(),
            ],
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::new(&twice),
            Err(AuthConfigError::DuplicateKey(..))
        ));
        let short = AuthConfig {
            jwt_secret: Some("too short".into()),
            ..AuthConfig::default()
        };
        assert_eq!(Auth::new(&short).unwrap_err(), AuthConfigError::ShortSecret);
    }

    #[test]
    fn a_key_is_accepted_in_either_header_and_named() {
        let auth = auth(&["ops:abcdefghijklmnop", "batch:qrstuvwxyz012345"], None);
        let by_bearer = auth.check(&headers(&[("authorization", "Bearer qrstuvwxyz012345")]));
        assert!(matches!(by_bearer, Credentials::Valid(Client::Key(ref n)) if &**n == "batch"));
        let by_header = auth.check(&headers(&[("x-api-key", "abcdefghijklmnop")]));
        assert!(matches!(by_header, Credentials::Valid(Client::Key(ref n)) if &**n == "ops"));
        assert!(matches!(
            auth.check(&HeaderMap::new()),
            Credentials::Missing
        ));
        assert!(matches!(
            auth.check(&headers(&[("x-api-key", "abcdefghijklmnoq")])),
            Credentials::Refused(_)
        ));
        assert!(matches!(
            auth.check(&headers(&[("authorization", "Basic b3BzOnB3")])),
            Credentials::Malformed(_)
        ));
    }

    #[test]
    fn tokens_need_a_good_signature_expiry_subject_and_issuer() {
        let auth = auth(&[], Some(SECRET));
        let check = |t: &str| auth.check(&headers(&[("authorization", &format!("Bearer {t}"))]));
        let good = token(serde_json::json!({"sub": "svc-a", "exp": now() + 600, "iss": "issuer"}));
        assert!(
            matches!(check(&good), Credentials::Valid(Client::Subject(ref s)) if &**s == "svc-a")
        );
        let reason = |t: &str| match check(t) {
            Credentials::Refused(reason) => reason,
            other => panic!("accepted: {other:?}"),
        };
        assert!(
            reason(&token(
                serde_json::json!({"sub": "a", "exp": now() - 600, "iss": "issuer"})
            ))
            .contains("expired")
        );
        assert!(reason(&token(serde_json::json!({"sub": "a", "iss": "issuer"}))).contains("exp"));
        assert!(
            reason(&token(
                serde_json::json!({"exp": now() + 600, "iss": "issuer"})
            ))
            .contains("sub")
        );
        assert!(
            reason(&token(
                serde_json::json!({"sub": "a", "exp": now() + 600, "iss": "other"})
            ))
            .contains("issuer")
        );
        // An issuer configured is required, not only compared.
        assert!(
            reason(&token(serde_json::json!({"sub": "a", "exp": now() + 600})))
                .contains("no issuer")
        );
        assert!(
            reason(&token(serde_json::json!({"sub": "a", "exp": now() + 600, "iss": "issuer", "nbf": now() + 600})))
                .contains("not valid yet")
        );
        // Signed with another secret.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "iss": "issuer"}),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!!").unwrap(),
        )
        .unwrap();
        assert!(reason(&forged).contains("signature"));
        // An algorithm this service does not take, `none` included.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "iss": "issuer"}),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(reason(&hs512).contains("HS512"));
        let mut parts = good.split('.');
        let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", parts.nth(1).unwrap());
        assert!(matches!(check(&unsigned), Credentials::Refused(_)));
        // Tokens only: an API key is refused with a reason.
        assert!(reason("abcdefghijklmnop").contains("not API keys"));
    }

    #[test]
    fn probes_and_documents_stay_open() {
        for open in [
            "/health",
            "/health/ready",
            "/metrics",
            "/swagger",
            "/swagger-ui/",
            "/api-docs/openapi.json",
        ] {
            assert!(is_open(open), "{open}");
        }
        for closed in [
            "/",
            "/api/users/1",
            "/healthy",
            "/jobs/weather",
            "/WeatherForecast/x",
        ] {
            assert!(!is_open(closed), "{closed}");
        }
    }
}
