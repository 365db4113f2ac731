-- Visits per tenant, counted by `POST /v1/visits`.
CREATE TABLE visits (
    tenant     TEXT PRIMARY KEY,
    visits     BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
