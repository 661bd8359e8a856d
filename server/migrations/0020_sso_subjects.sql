-- A single sign-on account is the provider's person: its issuer and subject
-- (`sub`), never the name claim, which people change and two people may
-- share. Accounts from before keep NULL until their next sign-in binds them.
ALTER TABLE users ADD COLUMN oidc_issuer TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_person ON users (oidc_issuer, oidc_subject);
