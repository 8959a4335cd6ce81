"""One deploy, stage by stage: which refs deploy, gate mode, checkout, build, release phase,
health gate, and the deploy that runs them in order."""
