with

source as (

    select * from {{ source('evo', 'session_members') }}

),

renamed as (

    select
        ----------  ids
        session_id,
        cast(member_index as integer) as member_index,
        endpoint_id,
        call_sid,

        ----------  strings
        identity,
        display_name,
        avatar_url,
        application_data,
        extra_fields,

        ----------  enums
        role,
        call_state,

        ----------  booleans
        cast(is_original_member as boolean) as is_original_member,
        cast(muted as boolean) as is_muted,

        ----------  lineage
        cast(partition_date as date) as partition_date,
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
