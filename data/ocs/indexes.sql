-- Foreign keys and secondary indexes of the OCS tables in schema.sql /
-- schema_legacy.sql, applied AFTER bulk loading. Works on both variants and
-- is idempotent (safe to apply twice).
--
-- Derived from dimagi/open-chat-studio @ a77c545ee01d52e94c6c1beb0f7477292a8e39b9.
-- Names are the ones Django generates (ForeignKey constraint + its index,
-- db_index, "_like" varchar_pattern_ops indexes for unique/db_index varchar
-- columns, Meta.indexes). Django makes every FK DEFERRABLE INITIALLY DEFERRED.
--
-- Not reproduced: FKs/indexes on omitted columns (owner_id, user_id,
-- messaging_provider_id, ...), and the 2026 session indexes on omitted columns:
--   expsession_team_lastact_idx   (team_id, last_activity_at DESC)
--   expsession_team_firstact_idx  (team_id, first_activity_at)
--   expsession_team_lastact_c_idx (team_id, COALESCE(last_activity_at, created_at) DESC)
-- OCS has no index on experiments_experimentsession.platform.
-- Databases from before 2026-04 (experiments/0134) also still have
-- experiments_chat_id_d99242_idx (chat_id, team_id) and
-- experiments_chat_id_6337a3_idx (chat_id, team_id, ended_at); not reproduced.
-- There is no "_like" index on experiments_experimentsession.external_id: it
-- began as a uuid column (public_id) and Django adds none on uuid->varchar.

-- ===========================================================================
-- Foreign keys
-- ===========================================================================

-- experiments_experiment
DO $$ BEGIN
    ALTER TABLE experiments_experiment
        ADD CONSTRAINT experiments_experiment_team_id_bec72ee9_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE experiments_experiment
        ADD CONSTRAINT experiments_experime_working_version_id_a0833e19_fk_experimen
        FOREIGN KEY (working_version_id) REFERENCES experiments_experiment (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- experiments_participant
DO $$ BEGIN
    ALTER TABLE experiments_participant
        ADD CONSTRAINT experiments_participant_team_id_2673ade4_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- channels_experimentchannel
DO $$ BEGIN
    ALTER TABLE channels_experimentchannel
        ADD CONSTRAINT channels_experimentchannel_team_id_d789dec4_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE channels_experimentchannel
        ADD CONSTRAINT channels_experimentc_experiment_id_9e515c27_fk_experimen
        FOREIGN KEY (experiment_id) REFERENCES experiments_experiment (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- chat_chat
DO $$ BEGIN
    ALTER TABLE chat_chat
        ADD CONSTRAINT chat_chat_team_id_6590c527_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- experiments_experimentsession
DO $$ BEGIN
    ALTER TABLE experiments_experimentsession
        ADD CONSTRAINT experiments_experimentsession_team_id_52c165fd_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE experiments_experimentsession
        ADD CONSTRAINT experiments_experime_participant_id_231668e8_fk_experimen
        FOREIGN KEY (participant_id) REFERENCES experiments_participant (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE experiments_experimentsession
        ADD CONSTRAINT experiments_experime_experiment_id_fb4a6bd6_fk_experimen
        FOREIGN KEY (experiment_id) REFERENCES experiments_experiment (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE experiments_experimentsession
        ADD CONSTRAINT experiments_experimentsession_chat_id_c7e867ca_fk_chat_chat_id
        FOREIGN KEY (chat_id) REFERENCES chat_chat (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE experiments_experimentsession
        ADD CONSTRAINT experiments_experime_experiment_channel_i_3598592a_fk_channels_
        FOREIGN KEY (experiment_channel_id) REFERENCES channels_experimentchannel (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- chat_chatmessage
DO $$ BEGIN
    ALTER TABLE chat_chatmessage
        ADD CONSTRAINT chat_chatmessage_chat_id_356f3993_fk_chat_chat_id
        FOREIGN KEY (chat_id) REFERENCES chat_chat (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- annotations_tag
DO $$ BEGIN
    ALTER TABLE annotations_tag
        ADD CONSTRAINT annotations_tag_team_id_f5be483b_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- annotations_customtaggeditem
DO $$ BEGIN
    ALTER TABLE annotations_customtaggeditem
        ADD CONSTRAINT annotations_customtaggeditem_team_id_f8d0a7e3_fk_teams_team_id
        FOREIGN KEY (team_id) REFERENCES teams_team (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE annotations_customtaggeditem
        ADD CONSTRAINT annotations_customta_tag_id_4f97765d_fk_annotatio
        FOREIGN KEY (tag_id) REFERENCES annotations_tag (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    ALTER TABLE annotations_customtaggeditem
        ADD CONSTRAINT annotations_customta_content_type_id_26b15aa5_fk_django_co
        FOREIGN KEY (content_type_id) REFERENCES django_content_type (id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ===========================================================================
-- Secondary indexes
-- ===========================================================================

-- teams_team
CREATE INDEX IF NOT EXISTS teams_team_slug_301a24e5_like
    ON teams_team (slug varchar_pattern_ops);

-- experiments_experiment
CREATE INDEX IF NOT EXISTS experiments_experiment_team_id_bec72ee9
    ON experiments_experiment (team_id);
CREATE INDEX IF NOT EXISTS experiments_experiment_working_version_id_a0833e19
    ON experiments_experiment (working_version_id);
CREATE INDEX IF NOT EXISTS experiments_team_id_e83039_idx
    ON experiments_experiment (team_id, is_archived, working_version_id);

-- experiments_participant
CREATE INDEX IF NOT EXISTS experiments_participant_team_id_2673ade4
    ON experiments_participant (team_id);
CREATE INDEX IF NOT EXISTS participant_team_created_idx
    ON experiments_participant (team_id, created_at DESC);
CREATE INDEX IF NOT EXISTS participant_created_at_idx
    ON experiments_participant (created_at);

-- channels_experimentchannel
CREATE INDEX IF NOT EXISTS channels_experimentchannel_team_id_d789dec4
    ON channels_experimentchannel (team_id);
CREATE INDEX IF NOT EXISTS channels_experimentchannel_experiment_id_9e515c27
    ON channels_experimentchannel (experiment_id);

-- chat_chat
CREATE INDEX IF NOT EXISTS chat_chat_team_id_6590c527
    ON chat_chat (team_id);

-- experiments_experimentsession (chat_id is covered by its unique constraint)
CREATE INDEX IF NOT EXISTS experiments_experimentsession_team_id_52c165fd
    ON experiments_experimentsession (team_id);
CREATE INDEX IF NOT EXISTS experiments_experimentsession_participant_id_231668e8
    ON experiments_experimentsession (participant_id);
CREATE INDEX IF NOT EXISTS experiments_experimentsession_experiment_id_fb4a6bd6
    ON experiments_experimentsession (experiment_id);
CREATE INDEX IF NOT EXISTS experiments_experimentsession_experiment_channel_id_3598592a
    ON experiments_experimentsession (experiment_channel_id);
CREATE INDEX IF NOT EXISTS expsession_created_at_idx
    ON experiments_experimentsession (created_at);

-- chat_chatmessage
CREATE INDEX IF NOT EXISTS chat_chatmessage_chat_id_356f3993
    ON chat_chatmessage (chat_id);
CREATE INDEX IF NOT EXISTS chat_chatme_chat_id_45c5e0_idx
    ON chat_chatmessage (chat_id, created_at);
CREATE INDEX IF NOT EXISTS chat_chatme_chat_id_4753eb_idx
    ON chat_chatmessage (chat_id, message_type, created_at);
CREATE INDEX IF NOT EXISTS chatmessage_created_at_idx
    ON chat_chatmessage (created_at);

-- annotations_tag
CREATE INDEX IF NOT EXISTS annotations_tag_team_id_f5be483b
    ON annotations_tag (team_id);
CREATE INDEX IF NOT EXISTS annotations_tag_slug_9dd94d1d_like
    ON annotations_tag (slug varchar_pattern_ops);

-- annotations_customtaggeditem
CREATE INDEX IF NOT EXISTS annotations_customtaggeditem_team_id_f8d0a7e3
    ON annotations_customtaggeditem (team_id);
CREATE INDEX IF NOT EXISTS annotations_customtaggeditem_tag_id_4f97765d
    ON annotations_customtaggeditem (tag_id);
CREATE INDEX IF NOT EXISTS annotations_customtaggeditem_content_type_id_26b15aa5
    ON annotations_customtaggeditem (content_type_id);
CREATE INDEX IF NOT EXISTS annotations_customtaggeditem_object_id_b8071704
    ON annotations_customtaggeditem (object_id);
CREATE INDEX IF NOT EXISTS annotations_content_89df85_idx
    ON annotations_customtaggeditem (content_type_id, object_id);

-- django_content_type: no secondary indexes (only its unique constraint).
