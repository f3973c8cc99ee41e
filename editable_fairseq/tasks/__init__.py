"""Tasks of the plugin; fairseq's ``--user-dir`` also auto-imports every module in this folder."""
