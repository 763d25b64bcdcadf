"""The situation report, in English or Japanese, within the reader's visibility."""
