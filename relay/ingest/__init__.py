"""Ingest: mailbox sources (IMAP, Maildir, LMTP) that store every message before it leaves the inbox."""
