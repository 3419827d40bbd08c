"""The certificate: the quantities the theory's bounds are written in, measured on real runs
(:mod:`qbc.certify.certificate`)."""
