"""The analysis floor: what a reviewer asks of a table, built on the model's answers.

Lint (sanity findings), addressing (MAXPHYADDR and reserved bits), migrate and
fleet (can a guest move), agreement (model vs a real backend) and review (one
engine behind the CLI's reports and notebook 09).  Nothing here imports a
surface (:mod:`cpuidkit.cli`, :mod:`cpuidkit.ui`).
"""
