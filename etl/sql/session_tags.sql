-- Tags on the chats of counted sessions, same rules as message tags.
SELECT DISTINCT
    s.team_id,
    t.id AS tag_id,
    s.session_id,
    s.chatbot_id,
    s.participant_id,
    s.platform
FROM annotations_customtaggeditem i
JOIN django_content_type ct
  ON ct.id = i.content_type_id AND ct.app_label = 'chat' AND ct.model = 'chat'
JOIN annotations_tag t
  ON t.id = i.tag_id AND t.team_id = i.team_id AND COALESCE(t.category, '') <> 'experiment_version'
JOIN snap_sessions s ON s.chat_id = i.object_id AND s.team_id = i.team_id
WHERE s.counted
