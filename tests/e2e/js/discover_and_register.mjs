// A second client library, oauth4webapi (JavaScript), against an API behind Envoy and keymesh: it parses the
// filter's challenge, fetches the RFC 9728 metadata it names and checks it, fetches the authorization server's
// RFC 8414 metadata, and registers a client there (RFC 7591); a registration outside the policy is refused with
// the RFC 7591 error. Every step is the library's own; this script only feeds one into the next.
//
//   node discover_and_register.mjs
//
// Environment: RESOURCE (the API's URL through Envoy), REDIRECT_URI (loopback). Prints JSON on stdout.

import * as oauth from 'oauth4webapi'

const insecure = { [oauth.allowInsecureRequests]: true } // the test stack speaks plain http on loopback
const resource = new URL(process.env.RESOURCE)
const log = (message) => process.stderr.write(`[oauth4webapi] ${message}\n`)

// A request with a token this API does not accept: the library turns the 401's WWW-Authenticate into challenges.
let challenges = []
try {
  await oauth.protectedResourceRequest('not-a-valid-token', 'GET', resource, new Headers(), null, insecure)
} catch (error) {
  if (!(error instanceof oauth.WWWAuthenticateChallengeError)) throw error
  if (error.response.status !== 401) throw new Error(`expected 401, got ${error.response.status}`)
  challenges = error.cause
}
const bearer = challenges.find((c) => c.scheme === 'bearer')
const metadataUrl = bearer?.parameters.resource_metadata
if (!metadataUrl) throw new Error(`no resource_metadata in ${JSON.stringify(challenges)}`)
log(`challenge names ${metadataUrl}`)

// The library derives the RFC 9728 §3.1 URL from the resource itself and checks `resource` in the answer.
const prm = await oauth.processResourceDiscoveryResponse(
  resource,
  await oauth.resourceDiscoveryRequest(resource, insecure),
)
const issuer = new URL(prm.authorization_servers[0])
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...insecure, algorithm: 'oauth2' }))
log(`authorization server ${as.issuer}, registration at ${as.registration_endpoint}`)

const metadata = {
  client_name: 'oauth4webapi e2e',
  redirect_uris: [process.env.REDIRECT_URI],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}
const client = await oauth.processDynamicClientRegistrationResponse(
  await oauth.dynamicClientRegistrationRequest(as, metadata, insecure),
)
log(`registered ${client.client_id}`)

let refused = null
try {
  await oauth.processDynamicClientRegistrationResponse(
    await oauth.dynamicClientRegistrationRequest(
      as,
      { ...metadata, token_endpoint_auth_method: 'client_secret_basic' },
      insecure,
    ),
  )
} catch (error) {
  if (!(error instanceof oauth.ResponseBodyError)) throw error
  refused = error.error
}

console.log(JSON.stringify({
  metadata_url: metadataUrl,
  resource: prm.resource,
  scopes_supported: prm.scopes_supported,
  issuer: as.issuer,
  client_id: client.client_id,
  token_endpoint_auth_method: client.token_endpoint_auth_method,
  has_registration_access_token: typeof client.registration_access_token === 'string',
  confidential_refused_with: refused,
}))
