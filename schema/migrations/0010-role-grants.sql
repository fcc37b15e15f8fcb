-- The changes that gave an institution a role in a case other than taking part
-- (that is participantGrant): 'lead' (a change assigned the case's lead
-- institution), 'offer' (the lead offered the case to the institution) and
-- 'referral:<instance>' (a referral was addressed to the institution). The
-- writer policy reads them in a received change's causal context, so whether
-- an institution may accept a handover or answer a referral is decided by the
-- change and what it had seen, the same on every replica.
CREATE TABLE roleGrant (
  caseRef INTEGER NOT NULL,
  role TEXT NOT NULL,
  institution TEXT NOT NULL,
  originRef INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  -- the granting change's timestamp (physical ms, logical), to find the latest
  physical INTEGER NOT NULL,
  logical INTEGER NOT NULL,
  PRIMARY KEY (caseRef, role, originRef, seq)
);
