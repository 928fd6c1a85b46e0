//! Every denial a configuration can give, rendered once when it is loaded: the JSON body, the `WWW-Authenticate`
//! challenge (realm, error code, description, the route's scopes and resource-metadata URL) and the header map in
//! the form the host takes. A refused request then picks its reply from this table instead of formatting one; only
//! the stale-key-material denial, which states how stale, is still rendered when it happens.

use crate::config::Route;
use crate::error::CredentialError;
use crate::resource_metadata::ProtectedResources;
use crate::verdict::{Denial, DenyReason, Reply};
use std::mem::discriminant;
use std::sync::Arc;

/// One error of each kind: what a reply depends on is the kind, never the payload (the description a client sees
/// is fixed per kind).
const KINDS: [CredentialError; 24] = [
    CredentialError::Missing,
    CredentialError::Ambiguous,
    CredentialError::MalformedHeader,
    CredentialError::TooLong { max: 0 },
    CredentialError::Malformed(""),
    CredentialError::ForbiddenHeader(""),
    CredentialError::MissingKid,
    CredentialError::UnknownKid,
    CredentialError::AlgorithmMismatch {
        expected: "",
        actual: String::new(),
    },
    CredentialError::BadSignature,
    CredentialError::MalformedClaims,
    CredentialError::MissingClaim(""),
    CredentialError::WrongTokenType,
    CredentialError::WrongIssuer,
    CredentialError::Revoked,
    CredentialError::Expired,
    CredentialError::NotYetValid,
    CredentialError::WrongAudience,
    CredentialError::IssuerNotAllowed,
    CredentialError::UnforwardableClaim(""),
    CredentialError::ApiKeyMalformed,
    CredentialError::ApiKeyUnknown,
    CredentialError::ApiKeyExpired,
    CredentialError::CredentialNotAccepted,
];

fn kind(error: &CredentialError) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| discriminant(k) == discriminant(error))
}

/// The rendered denials of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DenialTable {
    /// A bearer-token problem, per [`KINDS`] entry, for a route without resource metadata.
    token: Vec<Arc<Reply>>,
    /// An API-key problem, per [`KINDS`] entry.
    api_key: Vec<Arc<Reply>>,
    wrong_api: Arc<Reply>,
    no_route: Arc<Reply>,
    no_key_material: Arc<Reply>,
    /// Per route, in the configuration's order.
    routes: Vec<RouteDenials>,
}

/// The denials that depend on the route: its credential mode, its scopes, its resource-metadata URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteDenials {
    missing: Arc<Reply>,
    not_accepted: Arc<Reply>,
    bearer_scope: Arc<Reply>,
    apikey_scope: Arc<Reply>,
    /// `token` with the route's `resource_metadata` in the challenge, when metadata is served for its audience.
    token: Option<Vec<Arc<Reply>>>,
}

impl DenialTable {
    /// Renders every denial of a configuration with `realm`, `routes` and `metadata`.
    pub(crate) fn render(
        realm: &str,
        routes: &[Route],
        metadata: Option<&ProtectedResources>,
    ) -> Self {
        let reply = |denial: Denial| denial.reply;
        let url_for = |route: &Route| metadata.and_then(|m| m.url_for(&route.audience));
        let with_url = |denial: Denial, url: Option<&str>| match url {
            Some(url) => denial.with_resource_metadata(url),
            None => denial,
        };
        Self {
            token: KINDS
                .iter()
                .map(|e| reply(Denial::token(e.clone(), realm)))
                .collect(),
            api_key: KINDS
                .iter()
                .map(|e| reply(Denial::api_key(e.clone(), realm)))
                .collect(),
            wrong_api: reply(Denial::api_key_wrong_api(realm)),
            no_route: reply(Denial::no_route()),
            no_key_material: reply(Denial::no_key_material()),
            routes: routes
                .iter()
                .map(|route| {
                    let url = url_for(route);
                    let unauthenticated = |e: CredentialError| {
                        reply(with_url(
                            Denial::unauthenticated(e, route.credential, realm),
                            url,
                        ))
                    };
                    let scope = |scheme: &str| {
                        reply(with_url(
                            Denial::insufficient_scope(scheme, &route.scopes, Vec::new(), realm),
                            url,
                        ))
                    };
                    RouteDenials {
                        missing: unauthenticated(CredentialError::Missing),
                        not_accepted: unauthenticated(CredentialError::CredentialNotAccepted),
                        bearer_scope: scope("Bearer"),
                        apikey_scope: scope("apikey"),
                        token: url.map(|url| {
                            KINDS
                                .iter()
                                .map(|e| {
                                    reply(with_url(Denial::token(e.clone(), realm), Some(url)))
                                })
                                .collect()
                        }),
                    }
                })
                .collect(),
        }
    }

    /// A bearer-token problem on route `route` (an index into the configuration's routes), per RFC 6750 §3.1.
    pub(crate) fn token(&self, route: usize, error: CredentialError) -> Denial {
        let table = self
            .routes
            .get(route)
            .and_then(|r| r.token.as_ref())
            .unwrap_or(&self.token);
        let reply = kind(&error).and_then(|k| table.get(k));
        Self::deny(DenyReason::Token(error), reply, &self.no_route)
    }

    /// An API-key problem.
    pub(crate) fn api_key(&self, error: CredentialError) -> Denial {
        let reply = kind(&error).and_then(|k| self.api_key.get(k));
        Self::deny(DenyReason::Token(error), reply, &self.no_route)
    }

    /// No credential, or one route `route` does not take ([`CredentialError::CredentialNotAccepted`]).
    pub(crate) fn unauthenticated(&self, route: usize, error: CredentialError) -> Denial {
        let reply = self.routes.get(route).map(|r| match error {
            CredentialError::Missing => &r.missing,
            _ => &r.not_accepted,
        });
        Self::deny(DenyReason::Token(error), reply, &self.no_route)
    }

    /// A valid API key for another API.
    pub(crate) fn wrong_api(&self) -> Denial {
        Self::deny(DenyReason::WrongApi, Some(&self.wrong_api), &self.no_route)
    }

    /// A credential lacking `missing` of route `route`'s scopes, used with a bearer token or an API key.
    pub(crate) fn insufficient_scope(
        &self,
        route: usize,
        bearer: bool,
        missing: Vec<String>,
    ) -> Denial {
        let reply = self.routes.get(route).map(|r| {
            if bearer {
                &r.bearer_scope
            } else {
                &r.apikey_scope
            }
        });
        Self::deny(
            DenyReason::InsufficientScope { missing },
            reply,
            &self.no_route,
        )
    }

    /// No route covers the path.
    pub(crate) fn no_route(&self) -> Denial {
        Self::deny(DenyReason::NoRoute, Some(&self.no_route), &self.no_route)
    }

    /// No key material yet.
    pub(crate) fn no_key_material(&self) -> Denial {
        Self::deny(
            DenyReason::NoKeyMaterial,
            Some(&self.no_key_material),
            &self.no_route,
        )
    }

    /// A denial with `reply`. Every lookup above finds one (every kind and route is rendered); should one not,
    /// the request is still refused, with the 403 of an uncovered path rather than a panic.
    fn deny(reason: DenyReason, reply: Option<&Arc<Reply>>, fallback: &Arc<Reply>) -> Denial {
        let reply = Arc::clone(reply.unwrap_or(fallback));
        Denial {
            status: reply.status,
            reason,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialMode;
    use crate::FilterConfig;

    /// A configuration is shared between threads by its users (the fuzz harness keeps one in a `static`).
    #[test]
    fn a_configuration_with_its_table_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<FilterConfig>();
    }

    #[test]
    fn every_kind_is_listed_once() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(kind(k), Some(i), "{k:?}");
        }
    }

    /// The table gives what rendering at the time of the denial gives (which the scenario tests check against
    /// RFC 6750), for every kind, route and mode, with and without resource metadata.
    #[test]
    fn the_table_matches_rendering_on_the_spot() {
        for metadata in [false, true] {
            for (mode, mode_name) in [
                (CredentialMode::Jwt, "jwt"),
                (CredentialMode::ApiKey, "api_key"),
                (CredentialMode::Either, "either"),
            ] {
                let mut config = serde_json::json!({
                    "sidecar": {"cluster": "k"}, "realm": "orders-api",
                    "routes": [{"prefix": "/", "audience": "https://a.test", "scopes": ["a:read", "a:write"],
                                "credential": mode_name}]
                });
                if metadata {
                    config["resource_metadata"] =
                        serde_json::json!({"authorization_servers": ["https://as.test"]});
                }
                let config = FilterConfig::parse(config.to_string().as_bytes()).unwrap();
                let route = &config.routes[0];
                let url = config
                    .resource_metadata
                    .as_ref()
                    .and_then(|m| m.url_for(&route.audience));
                assert_eq!(url.is_some(), metadata);
                let fresh = |d: Denial| match url {
                    Some(url) => d.with_resource_metadata(url),
                    None => d,
                };
                let table = &config.denials;
                for e in KINDS {
                    assert_eq!(
                        table.token(0, e.clone()),
                        fresh(Denial::token(e.clone(), "orders-api"))
                    );
                    assert_eq!(
                        table.api_key(e.clone()),
                        Denial::api_key(e.clone(), "orders-api")
                    );
                }
                for e in [
                    CredentialError::Missing,
                    CredentialError::CredentialNotAccepted,
                ] {
                    assert_eq!(
                        table.unauthenticated(0, e.clone()),
                        fresh(Denial::unauthenticated(e, mode, "orders-api"))
                    );
                }
                let missing = vec!["a:write".to_owned()];
                for (bearer, scheme) in [(true, "Bearer"), (false, "apikey")] {
                    assert_eq!(
                        table.insufficient_scope(0, bearer, missing.clone()),
                        fresh(Denial::insufficient_scope(
                            scheme,
                            &route.scopes,
                            missing.clone(),
                            "orders-api"
                        ))
                    );
                }
                assert_eq!(table.wrong_api(), Denial::api_key_wrong_api("orders-api"));
                assert_eq!(table.no_route(), Denial::no_route());
                assert_eq!(table.no_key_material(), Denial::no_key_material());
                // A route index past the end still refuses.
                assert_eq!(table.token(9, CredentialError::Expired).status, 401);
            }
        }
    }
}
