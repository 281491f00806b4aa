"""Orchestration above training and evaluation: `attack` (checkpoints -> report) and
`reproduce` (preset -> trained models -> report)."""
