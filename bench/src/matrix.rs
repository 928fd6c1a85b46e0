//! What is measured: the Envoy variants, the credential workloads, and the interleaved order of the cells.
//!
//! Two matrices share one schedule: tokens ([`Variant`] × [`Workload`], `run`) and API keys ([`KeyVariant`] ×
//! [`KeyCase`], `run-api-keys`). They have different variants (the native filter compared with is `jwt_authn` for
//! one, `api_key_auth` for the other), so each keeps its own enums and its own report, and `run`'s defaults and
//! report stay what they were.

use keymesh_testkit::Alg;
use serde::Serialize;
use std::fmt;

/// One Envoy configuration under test. Every variant runs on the same Envoy binary and the same upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    /// Only the router: the floor every filter is measured against.
    None,
    /// Envoy's native `jwt_authn`, no verified-token cache.
    JwtAuthn,
    /// Envoy's native `jwt_authn` with `jwt_cache_config`.
    JwtAuthnCache,
    /// The keymesh authn wasm filter (V8).
    Keymesh,
    /// A proxy-wasm Rust SDK filter that returns Continue: the floor of any filter built with the SDK.
    EmptySdk,
    /// The leanest do-nothing wasm module (four exports, no SDK): the price of any wasm filter on this Envoy.
    EmptyMin,
    /// keymesh built from another commit (`--base-wasm`), to measure a change before and after in one run.
    KeymeshBase,
}

impl Variant {
    pub(crate) const ALL: [Variant; 7] = [
        Variant::None,
        Variant::EmptyMin,
        Variant::EmptySdk,
        Variant::JwtAuthn,
        Variant::JwtAuthnCache,
        Variant::KeymeshBase,
        Variant::Keymesh,
    ];
    /// The native filters keymesh is compared with, pair by pair.
    pub(crate) const NATIVE: [Variant; 2] = [Variant::JwtAuthn, Variant::JwtAuthnCache];
    /// What keymesh is compared with pair by pair in the ratio table: the natives and its own previous build.
    pub(crate) const COMPARED: [Variant; 3] = [
        Variant::JwtAuthn,
        Variant::JwtAuthnCache,
        Variant::KeymeshBase,
    ];

    /// True for the keymesh filter, whichever build.
    pub(crate) fn is_keymesh(self) -> bool {
        matches!(self, Variant::Keymesh | Variant::KeymeshBase)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::JwtAuthn => "jwt_authn",
            Variant::JwtAuthnCache => "jwt_authn_cache",
            Variant::Keymesh => "keymesh",
            Variant::EmptySdk => "empty_sdk",
            Variant::EmptyMin => "empty_min",
            Variant::KeymeshBase => "keymesh_base",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// True when the variant checks tokens (so an invalid token must get 401).
    pub(crate) fn authenticates(self) -> bool {
        !matches!(self, Variant::None | Variant::EmptySdk | Variant::EmptyMin)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which tokens a workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TokenCase {
    /// One valid token on every request (what a verified-token cache helps with).
    Cached,
    /// A different valid token per request, cycling through a large pool (no cache can help).
    Fresh,
    /// A different invalid-signature token per request: the CPU an attacker costs per rejected request.
    Invalid,
}

impl TokenCase {
    pub(crate) const ALL: [TokenCase; 3] =
        [TokenCase::Cached, TokenCase::Fresh, TokenCase::Invalid];

    pub(crate) fn name(self) -> &'static str {
        match self {
            TokenCase::Cached => "cached",
            TokenCase::Fresh => "fresh",
            TokenCase::Invalid => "invalid",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// What a correct filter answers.
    pub(crate) fn expected_status(self) -> u16 {
        match self {
            TokenCase::Cached | TokenCase::Fresh => 200,
            TokenCase::Invalid => 401,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            TokenCase::Cached => "one token reused",
            TokenCase::Fresh => "fresh valid token per request",
            TokenCase::Invalid => "invalid signature per request",
        }
    }
}

/// The algorithms of the fixture, by the names used on the command line and in file names.
pub(crate) const ALGS: [Alg; 3] = [Alg::EdDsa, Alg::Es256, Alg::Rs256];

pub(crate) fn alg_slug(alg: Alg) -> &'static str {
    match alg {
        Alg::EdDsa => "eddsa",
        Alg::Es256 => "es256",
        Alg::Rs256 => "rs256",
    }
}

pub(crate) fn parse_alg(s: &str) -> Option<Alg> {
    ALGS.into_iter()
        .find(|a| alg_slug(*a) == s.to_ascii_lowercase() || a.name() == s)
}

/// A credential workload: what wrk sends. API keys will be a second kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) alg: Alg,
    pub(crate) case: TokenCase,
}

impl Workload {
    /// The pool file (one token per line) this workload cycles through, relative to the prepared data dir.
    pub(crate) fn pool_file(self) -> String {
        format!("tokens/{}-{}.txt", alg_slug(self.alg), self.case.name())
    }

    pub(crate) fn label(self) -> String {
        format!("{} {}", self.alg.name(), self.case.name())
    }
}

/// One measurement: a variant under a workload, in one repetition (tokens by default, API keys as
/// `Cell<KeyVariant, KeyCase>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell<V = Variant, W = Workload> {
    pub(crate) rep: usize,
    pub(crate) variant: V,
    pub(crate) workload: W,
}

/// True when `variant` is measured under `workload`: the unfiltered Envoy and the do-nothing modules let every
/// token through, so they are only measured with valid single tokens (a floor does not depend on the token).
pub(crate) fn applies(variant: Variant, workload: Workload) -> bool {
    variant.authenticates() || workload.case == TokenCase::Cached
}

/// The order of every cell of every repetition. Each repetition rotates the workload order and, within each
/// workload, the variant order, so that each variant takes each position and no variant always runs right after
/// the same neighbour. The variants of one workload run back to back: the keymesh/native pairs of one repetition
/// are measured seconds apart, under the same background load.
pub(crate) fn schedule(reps: usize, variants: &[Variant], workloads: &[Workload]) -> Vec<Cell> {
    schedule_where(reps, variants, workloads, applies)
}

/// [`schedule`] for any matrix: `applies` says which variants run under which workload.
pub(crate) fn schedule_where<V: Copy, W: Copy>(
    reps: usize,
    variants: &[V],
    workloads: &[W],
    applies: impl Fn(V, W) -> bool,
) -> Vec<Cell<V, W>> {
    let mut cells = Vec::new();
    for rep in 0..reps {
        for workload in rotated(workloads, rep) {
            let here: Vec<V> = variants
                .iter()
                .copied()
                .filter(|v| applies(*v, workload))
                .collect();
            for variant in rotated(&here, rep) {
                cells.push(Cell {
                    rep,
                    variant,
                    workload,
                });
            }
        }
    }
    cells
}

/// One Envoy configuration of the API-key matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyVariant {
    /// Only the router.
    None,
    /// Envoy's native `api_key_auth`, every key inline.
    ApiKeyAuth,
    /// keymesh, route `credential: api_key`, the full bundle.
    Keymesh,
    /// keymesh with an empty bundle (memory baseline of the VM without keys).
    KeymeshEmpty,
    /// keymesh, the full bundle, with last-used counting off (`usage_report_ms: 0`): the "before" of its cost.
    KeymeshNoUsage,
    /// The leanest do-nothing wasm module: the price of any wasm filter.
    EmptyMin,
}

impl KeyVariant {
    /// The variants measured under load, side by side.
    pub(crate) const THROUGHPUT: [KeyVariant; 5] = [
        KeyVariant::None,
        KeyVariant::EmptyMin,
        KeyVariant::ApiKeyAuth,
        KeyVariant::KeymeshNoUsage,
        KeyVariant::Keymesh,
    ];
    /// The variants started one at a time for delivery time and memory.
    pub(crate) const MEMORY: [KeyVariant; 4] = [
        KeyVariant::None,
        KeyVariant::ApiKeyAuth,
        KeyVariant::Keymesh,
        KeyVariant::KeymeshEmpty,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyVariant::None => "none",
            KeyVariant::ApiKeyAuth => "api_key_auth",
            KeyVariant::Keymesh => "keymesh",
            KeyVariant::KeymeshEmpty => "keymesh_0",
            KeyVariant::KeymeshNoUsage => "keymesh_no_usage",
            KeyVariant::EmptyMin => "empty_min",
        }
    }

    /// True when the variant holds the prepared key set (a valid key gets 200, an unknown one 401).
    pub(crate) fn holds_keys(self) -> bool {
        matches!(
            self,
            KeyVariant::ApiKeyAuth | KeyVariant::Keymesh | KeyVariant::KeymeshNoUsage
        )
    }
}

/// Which API keys a workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyCase {
    /// A different valid key per request, cycling through the pool.
    Valid,
    /// A different well-formed unknown key per request.
    Unknown,
}

impl KeyCase {
    pub(crate) const ALL: [KeyCase; 2] = [KeyCase::Valid, KeyCase::Unknown];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyCase::Valid => "valid",
            KeyCase::Unknown => "unknown",
        }
    }

    /// The pool file (one key per line), relative to the prepared data dir.
    pub(crate) fn pool_file(self) -> String {
        format!("keys/{}.txt", self.name())
    }

    /// What a correct `variant` answers.
    pub(crate) fn expected_status(self, variant: KeyVariant) -> u16 {
        match (self, variant) {
            (KeyCase::Valid, _) | (KeyCase::Unknown, KeyVariant::None | KeyVariant::EmptyMin) => {
                200
            }
            (KeyCase::Unknown, _) => 401,
        }
    }
}

/// The API-key schedule: like [`schedule`]; `none` and `empty_min` run only the valid case (they forward
/// everything).
pub(crate) fn key_schedule(
    reps: usize,
    variants: &[KeyVariant],
    cases: &[KeyCase],
) -> Vec<Cell<KeyVariant, KeyCase>> {
    schedule_where(reps, variants, cases, |v, c| {
        !matches!(v, KeyVariant::None | KeyVariant::EmptyMin) || c == KeyCase::Valid
    })
}

fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = by % items.len();
    items[k..].iter().chain(&items[..k]).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workloads() -> Vec<Workload> {
        ALGS.iter()
            .flat_map(|&alg| TokenCase::ALL.map(|case| Workload { alg, case }))
            .collect()
    }

    #[test]
    fn schedule_covers_every_applicable_cell_once_per_rep() {
        let cells = schedule(3, &Variant::ALL, &workloads());
        // 4 filtering variants (keymesh_base among them) x 9 workloads + the 3 floors on the 3 cached workloads.
        assert_eq!(cells.len(), 3 * (4 * 9 + 3 * 3));
        for rep in 0..3 {
            let mine: Vec<_> = cells.iter().filter(|c| c.rep == rep).collect();
            assert_eq!(mine.len(), 45);
            assert!(!mine
                .iter()
                .any(|c| !c.variant.authenticates() && c.workload.case != TokenCase::Cached));
        }
    }

    #[test]
    fn each_rep_rotates_the_order() {
        let w = workloads();
        let cells = schedule(2, &Variant::ALL, &w);
        let first: Vec<_> = cells.iter().filter(|c| c.rep == 0).collect();
        let second: Vec<_> = cells.iter().filter(|c| c.rep == 1).collect();
        assert_eq!(first[0].workload, w[0]);
        assert_eq!(second[0].workload, w[1]);
        // EdDSA cached runs none first in rep 0; in rep 1 (where it comes last) it starts one variant later.
        assert_eq!(first[0].variant, Variant::None);
        let last = second
            .iter()
            .filter(|c| c.workload == w[0])
            .collect::<Vec<_>>();
        assert_eq!(last[0].variant, Variant::EmptyMin);
    }

    #[test]
    fn key_schedule_rotates_and_runs_none_only_on_valid_keys() {
        let cells = key_schedule(2, &KeyVariant::THROUGHPUT, &KeyCase::ALL);
        assert_eq!(cells.len(), 2 * (5 + 3));
        assert!(!cells
            .iter()
            .any(|c| !c.variant.holds_keys() && c.workload == KeyCase::Unknown));
        assert_eq!(cells[0].workload, KeyCase::Valid);
        assert_eq!(cells[5].workload, KeyCase::Unknown);
        assert_eq!(cells[0].variant, KeyVariant::None);
        assert_eq!(cells[4].variant, KeyVariant::Keymesh);
    }

    #[test]
    fn names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        for c in TokenCase::ALL {
            assert_eq!(TokenCase::parse(c.name()), Some(c));
        }
        assert_eq!(parse_alg("RS256"), Some(Alg::Rs256));
        assert_eq!(parse_alg("eddsa"), Some(Alg::EdDsa));
        assert_eq!(parse_alg("hs256"), None);
    }
}
