-- Orders accepted by the api-gateway. The order-worker marks them processed; `status` only moves
-- from 'created' to 'processed', which is what makes processing idempotent by order id.
CREATE TABLE orders (
    id              BIGSERIAL PRIMARY KEY,
    tenant          VARCHAR(100) NOT NULL,
    amount          NUMERIC(14, 2) NOT NULL CHECK (amount > 0),
    status          VARCHAR(20) NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'processed')),
    idempotency_key VARCHAR(255),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    processed_at    TIMESTAMPTZ
);

CREATE INDEX orders_tenant_created_at ON orders (tenant, created_at);
