-- The initial schema, MySQL/MariaDB dialect. Keep it equivalent to
-- ../sqlite and ../postgres: same tables, columns, order, constraints.
-- Times are milliseconds since the Unix epoch in a BIGINT, the one time
-- representation all three engines store and decode the same way.
-- utf8mb4_bin: text compares byte for byte, as on PostgreSQL and SQLite, so
-- the unique email and the search behave the same on every engine (the
-- default *_ci collations would also fold case and accents).

CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(254) NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE products (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    description TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    stock INT NOT NULL CHECK (stock >= 0),
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE orders (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity INT NOT NULL CHECK (quantity > 0),
    total_cents BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    INDEX orders_user_id_idx (user_id),
    INDEX orders_product_id_idx (product_id),
    CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT orders_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
