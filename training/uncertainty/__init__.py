"""How sure a count is: temperature scaling, conformal count ranges, the discrepancy decision simulated."""
