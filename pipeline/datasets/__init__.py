"""Datasets: reading and writing fine-tuning files, checking them, and building immutable snapshots.

formats    one conversation ⇄ a row in OpenAI chat, ChatML, Alpaca, ShareGPT or prompt/completion form
reader     an uploaded file's bytes → numbered rows, every unreadable line reported, never raised
checks     OpenAI-style data checks, token statistics and the training cost per backend
targets    the base models each backend fine-tunes: context limit, minimum examples, price
build      a filter over reviewed examples → a split, validated, content-hashed snapshot on disk
importer   rows from a file → imported examples, duplicates skipped, nothing stored touched
preferences  edited responses → DPO pairs (edited preferred over original)
"""
