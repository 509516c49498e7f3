-- Placement at signup (#27): a plan change whose footprint outgrows the tenant's cluster keeps
-- the tenant there (no move exists yet) and says so here, shown in its status.
ALTER TABLE placements ADD COLUMN warning TEXT;
