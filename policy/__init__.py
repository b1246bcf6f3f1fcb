"""Pure decisions of the patient.mssante.fr operator: no I/O, standard library only."""
