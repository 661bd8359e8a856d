-- Cluster objects Slipway created for deployment bindings, written before
-- the object is first applied. An object whose binding is gone is found
-- here and removed (or marked), without listing the whole cluster.
CREATE TABLE serving_objects (
    target TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (target, namespace, name)
);
