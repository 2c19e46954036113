-- history::clickhouse::CancelOnDrop (src/history/clickhouse.rs): kills the queries of a history
-- read that gave up on ClickHouse (each read's queries have their own query_id), without
-- waiting for them to stop. Killing a query that already ended does nothing.
-- bind: ['minipay-00000000deadbeef-1','minipay-00000000deadbeef-2']
KILL QUERY WHERE has(?, query_id) ASYNC
