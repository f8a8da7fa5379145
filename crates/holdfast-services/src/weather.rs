//! The weather demo's domain: a weather forecast for a city, the service
//! the ingress and the workers carry over the streams.
//!
//! Input is parsed, not validated: [`WeatherRequest`] can only hold a city
//! and location that passed [`TryFrom`]. The forecast is fake but
//! deterministic (same city, location and day give the same numbers), so
//! tests and load runs can check answers.

use std::time::Duration;

use bytes::Bytes;
use holdfast_core::Deadline;
use holdfast_streams::{Handler, HandlerError, Request};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The topic of the weather demo's requests, where the ingress sends
/// them and the workers serve them unless told otherwise.
pub const TOPIC: &str = "weather";

/// The JSON body of `POST /WeatherForecast/city`, as received.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeatherRequestBody {
    /// City name, 1 to 100 characters.
    #[schema(example = "New York")]
    pub city: String,
    /// Optional part of the city, up to 100 characters.
    #[schema(example = "Downtown")]
    pub location: Option<String>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeatherRequest {
    city: String,
    location: Option<String>,
}

/// Why a weather request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidWeatherRequest {
    /// `city` is blank.
    #[error("`city` must not be blank")]
    BlankCity,
    /// A field is too long.
    #[error("`{0}` must be at most 100 characters")]
    TooLong(&'static str),
    /// A field holds control characters.
    #[error("`{0}` must not contain control characters")]
    ControlCharacters(&'static str),
}

fn clean(field: &'static str, value: &str) -> Result<String, InvalidWeatherRequest> {
    let value = value.trim();
    if value.chars().count() > 100 {
        return Err(InvalidWeatherRequest::TooLong(field));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidWeatherRequest::ControlCharacters(field));
    }
    Ok(value.to_owned())
}

impl TryFrom<WeatherRequestBody> for WeatherRequest {
    type Error = InvalidWeatherRequest;

    fn try_from(body: WeatherRequestBody) -> Result<Self, Self::Error> {
        let city = clean("city", &body.city)?;
        if city.is_empty() {
            return Err(InvalidWeatherRequest::BlankCity);
        }
        let location = body
            .location
            .map(|l| clean("location", &l))
            .transpose()?
            .filter(|l| !l.is_empty());
        Ok(Self { city, location })
    }
}

impl WeatherRequest {
    /// The city.
    pub fn city(&self) -> &str {
        &self.city
    }

    /// The location, if given.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The body as sent over the stream.
    pub fn to_body(&self) -> WeatherRequestBody {
        WeatherRequestBody {
            city: self.city.clone(),
            location: self.location.clone(),
        }
    }
}

/// One day's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayForecast {
    /// ISO date, `YYYY-MM-DD`.
    pub date: String,
    /// Temperature in Celsius.
    pub temperature_c: i32,
    /// Temperature in Fahrenheit.
    pub temperature_f: i32,
    /// One word for people.
    pub summary: String,
}

/// The answer to a weather request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Forecast {
    /// City asked for.
    pub city: String,
    /// Location asked for.
    pub location: Option<String>,
    /// Five days starting today.
    pub forecasts: Vec<DayForecast>,
    /// Consumer name of the worker that answered.
    pub worker: String,
}

const SUMMARIES: [&str; 10] = [
    "Freezing",
    "Bracing",
    "Chilly",
    "Cool",
    "Mild",
    "Warm",
    "Balmy",
    "Hot",
    "Sweltering",
    "Scorching",
];

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The forecast for `req` over five days from `today` (days since epoch).
pub fn forecast(req: &WeatherRequest, today: i64, worker: &str) -> Forecast {
    let location = req.location.as_deref().unwrap_or("");
    let forecasts = (0..5)
        .map(|offset| {
            let day = today + offset;
            let h = fnv1a(&[
                req.city.to_lowercase().as_bytes(),
                location.to_lowercase().as_bytes(),
                &day.to_le_bytes(),
            ]);
            let temperature_c = (h % 76) as i32 - 20;
            let (y, m, d) = holdfast_core::civil_date(day);
            DayForecast {
                date: format!("{y:04}-{m:02}-{d:02}"),
                temperature_c,
                temperature_f: 32 + (temperature_c as f64 / 0.5556) as i32,
                summary: SUMMARIES[((temperature_c + 20) as usize * SUMMARIES.len()) / 76]
                    .to_owned(),
            }
        })
        .collect();
    Forecast {
        city: req.city.clone(),
        location: req.location.clone(),
        forecasts,
        worker: worker.to_owned(),
    }
}

/// The worker-side handler of the weather topic.
#[derive(Clone, Debug)]
pub struct WeatherHandler {
    /// Simulated work per request.
    pub processing_time: Duration,
    /// Name reported in answers.
    pub worker: String,
    /// Where requests that carry an idempotency key record their effect,
    /// once per key; `None` records nothing.
    pub effects: Option<EffectLedger>,
}

/// The weather handler's side effect, made exactly once per idempotency key
/// although the transport delivers at least once.
///
/// The "effect" of a forecast job is a line in a ledger: the hash
/// `{prefix}:{effects:<topic>}:applied` counts, per idempotency key, how many
/// times the effect was applied. One script checks and applies it
/// atomically: a key seen before is not applied again, and the delivery is
/// counted as `absorbed` in `{prefix}:{effects:<topic>}:stats` instead. A
/// value above 1 in the ledger is therefore a duplicated effect, which is
/// what `holdfast chaos` counts; `absorbed` shows the redeliveries that the
/// key made harmless. The keys expire a day after their last write.
#[derive(Clone)]
pub struct EffectLedger {
    redis: holdfast_redis::Redis,
    applied: String,
    seen: String,
    stats: String,
}

impl std::fmt::Debug for EffectLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectLedger")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

/// Checks the key and applies the effect in one step (KEYS: seen, applied,
/// stats; ARGV: idempotency key, worker, ttl seconds). Returns 1 when
/// applied, 0 when absorbed.
static EFFECT_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local first = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if first == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('HINCRBY', KEYS[3], 'applied', 1)
else
  redis.call('HINCRBY', KEYS[3], 'absorbed', 1)
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return first
"#,
    )
});

/// How long the ledger keys live after their last write.
const EFFECT_TTL_SECS: u64 = 86_400;

impl EffectLedger {
    /// The ledger of `topic` (its keys: [`Keys::effects_applied`] and
    /// siblings).
    ///
    /// [`Keys::effects_applied`]: holdfast_core::Keys::effects_applied
    pub fn new(
        redis: holdfast_redis::Redis,
        keys: &holdfast_core::Keys,
        topic: &holdfast_core::Topic,
    ) -> Self {
        Self {
            redis,
            applied: keys.effects_applied(topic),
            seen: keys.effects_seen(topic),
            stats: keys.effects_stats(topic),
        }
    }

    /// The ledger hash: idempotency key to the number of times applied.
    pub fn applied_key(&self) -> &str {
        &self.applied
    }

    /// The hash of counters `applied` and `absorbed`.
    pub fn stats_key(&self) -> &str {
        &self.stats
    }

    /// Applies the effect of `key` unless it was applied before; true when
    /// applied now.
    pub async fn apply_once(
        &self,
        key: &str,
        worker: &str,
    ) -> Result<bool, holdfast_redis::RedisError> {
        let mut invocation = EFFECT_SCRIPT.prepare_invoke();
        invocation
            .key(&self.seen)
            .key(&self.applied)
            .key(&self.stats)
            .arg(key)
            .arg(worker)
            .arg(EFFECT_TTL_SECS);
        let applied: i64 = self
            .redis
            .script(&invocation, Duration::from_secs(1))
            .await?;
        Ok(applied == 1)
    }
}

impl Handler for WeatherHandler {
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static {
        let processing_time = self.processing_time;
        let worker = self.worker.clone();
        let effects = self.effects.clone();
        async move {
            let body: WeatherRequestBody =
                serde_json::from_slice(&req.envelope.body).map_err(|e| HandlerError::Rejected {
                    code: "invalid_request".into(),
                    message: format!("body is not a weather request: {e}"),
                })?;
            let parsed = WeatherRequest::try_from(body).map_err(|e| HandlerError::Rejected {
                code: "invalid_request".into(),
                message: e.to_string(),
            })?;
            if !processing_time.is_zero() {
                tokio::time::sleep(processing_time).await;
            }
            if let (Some(ledger), Some(key)) = (&effects, &req.envelope.idempotency_key) {
                // A failure here leaves the entry pending: it is delivered
                // again, and the key keeps the effect single.
                ledger
                    .apply_once(key, &worker)
                    .await
                    .map_err(|e| HandlerError::Failed(format!("effect not recorded: {e}")))?;
            }
            let today = (Deadline::now_unix_ms() / 86_400_000) as i64;
            let answer = forecast(&parsed, today, &worker);
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .map_err(|e| HandlerError::Failed(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(city: &str, location: Option<&str>) -> Result<WeatherRequest, InvalidWeatherRequest> {
        WeatherRequest::try_from(WeatherRequestBody {
            city: city.into(),
            location: location.map(Into::into),
        })
    }

    #[test]
    fn the_same_city_and_day_give_the_same_forecast() {
        let r = req("New York", Some("Downtown")).unwrap();
        assert_eq!(
            forecast(&r, 20_000, "w").forecasts,
            forecast(&r, 20_000, "w").forecasts
        );
        assert_ne!(
            forecast(&r, 20_000, "w").forecasts,
            forecast(&r, 20_001, "w").forecasts
        );
    }

    #[test]
    fn forecasts_cover_five_days_with_plausible_numbers() {
        let f = forecast(&req("Oslo", None).unwrap(), 0, "w");
        assert_eq!(f.forecasts.len(), 5);
        assert_eq!(f.forecasts[0].date, "1970-01-01");
        assert_eq!(f.forecasts[4].date, "1970-01-05");
        for d in &f.forecasts {
            assert!((-20..=55).contains(&d.temperature_c));
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(req("   ", None), Err(InvalidWeatherRequest::BlankCity));
        assert_eq!(
            req(&"x".repeat(101), None),
            Err(InvalidWeatherRequest::TooLong("city"))
        );
        assert_eq!(
            req("Oslo\u{0}", None),
            Err(InvalidWeatherRequest::ControlCharacters("city"))
        );
        assert_eq!(req(" Oslo ", Some(" ")).unwrap().location(), None);
    }
}
