-- Single sign-on logins in flight, between the redirect to the provider
-- and its callback (which may reach another replica). Kept by the SHA-256
-- of the state; deleted when used, and after ten minutes.
CREATE TABLE oidc_flows (
    state_hash TEXT PRIMARY KEY,
    pkce_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    next TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
