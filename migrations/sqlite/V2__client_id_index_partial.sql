-- Only messages that carry a clientMessageId need the dedupe index: the
-- others were inserting a (user_id, NULL) entry each, one B-tree insert in
-- four per message for nothing. The lookup (user_id = ? AND
-- client_message_id = ?) implies client_message_id IS NOT NULL, so SQLite
-- still uses the index.
DROP INDEX messages_user_client_id;
CREATE UNIQUE INDEX messages_user_client_id ON messages (user_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
