"""A tiny decoder-only transformer that carries the toy experiments to sequences (chapter 7)."""
