"""The store's engine and tables: one place declares every table, so ``init_db`` knows them all."""
