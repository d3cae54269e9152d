"""sub-VP SDE configs (Song et al. 2021, eq. 29): the VP networks under the sub-VP SDE."""
