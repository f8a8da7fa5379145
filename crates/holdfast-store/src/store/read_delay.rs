//! The artificial delay before reads, per entity, that lets a demo show a
//! slow database next to a fast cache. Zero unless set.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Store;
use crate::model::Entity;

impl Store {
    /// Sets an artificial delay before every read of `entity`, for demos of
    /// a slow database (the cache then shows its worth). Zero by default.
    /// Affects every clone of this store.
    pub fn set_read_delay(&self, entity: Entity, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.read_delays[delay_slot(entity)].store(micros, Ordering::Relaxed);
    }

    /// The artificial delay before reads of `entity`.
    pub fn read_delay(&self, entity: Entity) -> Duration {
        Duration::from_micros(self.inner.read_delays[delay_slot(entity)].load(Ordering::Relaxed))
    }

    /// Builder form of [`Store::set_read_delay`] for products, the entity the
    /// demo slows down.
    pub fn with_product_read_delay(self, delay: Duration) -> Self {
        self.set_read_delay(Entity::Product, delay);
        self
    }

    /// Builder form of [`Store::set_read_delay`].
    pub fn with_read_delay(self, entity: Entity, delay: Duration) -> Self {
        self.set_read_delay(entity, delay);
        self
    }

    pub(super) async fn delay_read(&self, entity: Entity) {
        let delay = self.read_delay(entity);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

fn delay_slot(entity: Entity) -> usize {
    match entity {
        Entity::User => 0,
        Entity::Product => 1,
        Entity::Order => 2,
    }
}
