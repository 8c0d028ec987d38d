//! A typed map of shared services (GitHub client, configuration…) that actions look up.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared services by type. `T` may be a trait object: `services.insert::<dyn GitHub>(client)`.
#[derive(Clone, Default)]
pub struct Services {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("count", &self.by_type.len())
            .finish()
    }
}

impl Services {
    /// No services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the service of type `T`.
    pub fn insert<T: Send + Sync + ?Sized + 'static>(&mut self, service: Arc<T>) -> &mut Self {
        // `Arc<T>` itself is stored (boxed as `Any`) so that unsized `T` works.
        self.by_type.insert(TypeId::of::<T>(), Arc::new(service));
        self
    }

    /// The service of type `T`, if configured.
    pub fn get<T: Send + Sync + ?Sized + 'static>(&self) -> Option<Arc<T>> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|any| any.downcast_ref::<Arc<T>>())
            .cloned()
    }
}
