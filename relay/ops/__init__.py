"""Operations commands: backup/restore, export, master keys, development instance, mailbox
close, database schema, config check and trust list update, and their progress bars."""
