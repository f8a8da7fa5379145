//! The api's health: ready while the database answers (as the database
//! watch last saw it) and not draining. Redis being down is a declared
//! degraded mode, shown in the detail, not a reason to be taken out of
//! rotation: reads then go straight to the database.

use std::sync::atomic::Ordering;

use holdfast_cache::ReadThrough;
use serde_json::json;

use super::ApiState;
use super::db_watch::DbStatus;
use crate::health::HealthCheck;

impl ApiState {
    fn db_status(&self) -> DbStatus {
        self.db.lock().expect("db status lock poisoned").clone()
    }
}

/// The api's health, as its public and admin listeners report it.
impl HealthCheck for ApiState {
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let db = self.db_status();
        if !db.up {
            reasons.push(format!(
                "database is not answering ({})",
                db.last_error.unwrap_or("unknown")
            ));
        }
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".into());
        }
        reasons
    }

    fn detail(&self) -> serde_json::Value {
        let db = self.db_status();
        let breaker = self.users_client.breaker.snapshot();
        let cache = |rt: &ReadThrough| {
            json!({
                "state": rt.state().as_str(),
                "ttl_secs": rt.config().ttl.as_secs_f64(),
                "l1": rt.config().l1.is_some(),
                "stats": rt.stats(),
            })
        };
        json!({
            "role": "api",
            "database": {
                "backend": self.store.backend().as_str(),
                "state": if db.up { "up" } else { "down" },
                "last_error": db.last_error,
                "pool": self.store.pool_status(),
            },
            "redis": self.redis.health(),
            "cache": {
                "users": cache(&self.users),
                "products": cache(&self.products),
                "warm_up": *self.warm_up.lock().expect("warm-up status lock poisoned"),
            },
            "users_client": {
                "base_url": self.users_client.base,
                "breaker": {
                    "state": breaker.state.as_str(),
                    "consecutive_failures": breaker.consecutive_failures,
                    "times_opened": breaker.times_opened,
                    "rejected": breaker.rejected,
                },
            },
            "draining": self.draining.load(Ordering::Relaxed),
        })
    }
}
