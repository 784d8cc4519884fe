-- The database's identity: a random id made once, with the schema. A relay
-- writes it beside its journal and refuses to store a journal's records in
-- a database that is not the one they were journaled for (a fresh or reset
-- database would store them again with new SEQs).
ALTER TABLE RELAY_STATE ADD COLUMN INSTANCE VARCHAR(36) NOT NULL DEFAULT '';
UPDATE RELAY_STATE SET INSTANCE = UUID() WHERE K = 1 AND INSTANCE = '';
