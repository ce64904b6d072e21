-- Undo 0001.initial: drop everything pyqueue made in this database.
DROP SCHEMA pyqueue CASCADE;

-- The roles are shared by the whole cluster: drop each one unless another
-- database still grants it something (that database still runs pyqueue).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pyqueue_producer', 'pyqueue_worker', 'pyqueue_monitor'] LOOP
        BEGIN
            EXECUTE format('DROP ROLE IF EXISTS %I', role_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'pyqueue: role % kept: another database still uses it', role_name;
        END;
    END LOOP;
END;
$$;
