//! Tenant ids for the benches: shaped like real ones (a letter, then 11 of `[a-z0-9]`) and
//! spread like random ones, so the sharded layout spreads them as it would real tenants
//! (`t0000…` or `r0000…` ids would all share one leaf directory).

/// Tenant `i`'s id: spread like generated ids (a letter, then 11 of `[a-z0-9]`), so the
/// repository's prefix directories fill as they do in service.
pub fn tenant_id(i: usize) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // splitmix64: a fixed, well-spread sequence.
    let mut x = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut id = String::from(ALNUM[(x % 26) as usize] as char);
    let mut rest = (x / 26) ^ (i as u64) << 40;
    for _ in 1..12 {
        id.push(ALNUM[(rest % 36) as usize] as char);
        rest /= 36;
    }
    id
}
