"""Importable stages of the seqdis workflow: each rule is a thin wrapper around one function here."""
