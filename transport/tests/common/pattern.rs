//! The one test-data helper of the transport crate, shared by its unit tests
//! (`src/tcp/tests`, through a `#[path]` module) and its integration tests (`common`).

/// `len` deterministic bytes for byte-exact checks: neighbours differ (a shifted or
/// duplicated copy shows), and `salt` makes streams that must not be mixed up differ.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + i / 7919) as u8).wrapping_add(salt))
        .collect()
}
